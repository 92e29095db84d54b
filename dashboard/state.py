"""State kept in one place: the chosen model, the loaded classifier, and settings that
live in the URL query (so a view can be shared and survives a reload).

A widget's first value comes from, in order: its live state, the value it had when the
person last left the page, the URL query, the page's default. After the widget is drawn
its value goes back into the URL (defaults are left out to keep links short).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import streamlit as st

from dashboard import runner
from dgncore.errors import InputError, one_line

KEPT = "_dgn_kept"  # widget values kept across page switches
NAMED_MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "vgg16"]
OTHER = "other model (name + weights file)"
UPLOAD = "upload a TorchScript model (.pt + .json)"
MAX_TEXT = 500


def uploads_dir() -> Path:
    """Where uploaded models and datasets are kept: ``$DGN_UPLOADS`` or a temp folder."""
    raw = os.environ.get("DGN_UPLOADS")
    return Path(raw).expanduser() if raw else Path(tempfile.gettempdir()) / "dgn-explorer-uploads"


def limits():
    from dgncore.limits import settings

    return settings()


# --------------------------------------------------------------------------- URL-backed widgets


def _cast(raw: Any, default: Any, options: Sequence[Any] | None, lo: Any, hi: Any) -> Any:
    if isinstance(default, list):
        return [x for x in str(raw).split(",") if x][:64]
    if options is not None:
        for o in options:
            if str(o) == str(raw):
                return o
        raise ValueError(raw)
    if isinstance(default, bool):
        return str(raw).lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        v = int(str(raw))
        return min(max(v, lo if lo is not None else v), hi if hi is not None else v)
    if isinstance(default, float):
        v = float(str(raw))
        return min(max(v, lo if lo is not None else v), hi if hi is not None else v)
    return str(raw)[:MAX_TEXT]


def init(key: str, default: Any, param: str | None = None, options: Sequence[Any] | None = None, lo: Any = None, hi: Any = None) -> None:
    """Give the widget ``key`` its first value (see the module docstring)."""
    if key in st.session_state:
        return
    kept = st.session_state.setdefault(KEPT, {})
    value = default
    if key in kept:
        value = kept[key]
    else:
        raw = st.query_params.get_all(param) if isinstance(default, list) and param else None
        raw = ",".join(raw) if raw else (st.query_params.get(param) if param else None)
        if raw is not None:
            try:
                value = _cast(raw, default, options, lo, hi)
            except (ValueError, TypeError):
                value = default
    if isinstance(default, list) and options is not None:
        value = [v for v in value if v in options]
    elif options is not None and value not in options:
        value = default
    st.session_state[key] = value


def publish(key: str, param: str | None, default: Any) -> None:
    """Remember the widget's value across page switches and put it in the URL."""
    value = st.session_state.get(key, default)
    st.session_state.setdefault(KEPT, {})[key] = value
    if not param:
        return
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    default_text = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    if text == default_text:
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get(param) != text:
        st.query_params[param] = text


def widget(fn: Callable[..., Any], label: str, key: str, default: Any, param: str | None = None, **kwargs: Any) -> Any:
    """Draw ``fn(label, key=key, **kwargs)`` with its value bound to the URL parameter ``param``."""
    options = kwargs.get("options")
    init(key, default, param, options, kwargs.get("min_value"), kwargs.get("max_value"))
    value = fn(label, key=key, **kwargs)
    publish(key, param, default)
    return value


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelChoice:
    spec: str  # what load_classifier gets: a name or a .pt path
    weights: str | None
    name: str  # shown, stored in records, names the results folder
    param: str  # the ?model= value that brings this choice back


def save_upload(pt: bytes, sidecar: bytes, filename: str) -> Path:
    """Keep an uploaded TorchScript model and its sidecar under the uploads folder, by content."""
    digest = runner.content_hash(pt, sidecar)
    folder = uploads_dir() / "models" / digest
    stem = runner.safe_name(Path(filename).stem, 40) or "model"
    path = folder / f"{stem}.pt"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.json").write_bytes(sidecar)
        path.write_bytes(pt)
    return path


def find_upload(digest: str) -> Path | None:
    if not digest.isalnum() or len(digest) > 64:
        return None
    folder = uploads_dir() / "models" / digest
    found = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    return found[0] if found else None


def model_sidebar() -> ModelChoice | None:
    """The sidebar's model picker; returns the chosen model (None while it is incomplete)."""
    lim = limits()
    uploads = lim.allow_uploads and lim.allow_torchscript
    if lim.models:
        options = list(lim.models)
    else:
        options = NAMED_MODELS + [OTHER] + ([UPLOAD] if uploads else [])
    raw = st.query_params.get("model", "")
    if "model.choice" not in st.session_state and KEPT not in st.session_state and raw:
        if raw in options:
            st.session_state["model.choice"] = raw
        elif raw.startswith("upload:") and uploads:
            st.session_state["model.choice"] = UPLOAD
            st.session_state["model.upload_hash"] = raw.split(":", 1)[1]
        elif OTHER in options:
            st.session_state["model.choice"] = OTHER
            st.session_state["model.other"] = raw[:MAX_TEXT]
            st.session_state["model.weights"] = st.query_params.get("weights", "")[:MAX_TEXT]
    init("model.choice", options[0], None, options)
    side = st.sidebar
    choice = side.selectbox("Model", options, key="model.choice", help="The trained classifier whose idea of a class you want to see.")
    publish("model.choice", None, options[0])
    result: ModelChoice | None = None
    if choice == OTHER:
        init("model.other", "")
        init("model.weights", "")
        name = side.text_input("Model name", key="model.other", placeholder="resnet50, vgg16, convnext_tiny ...", help="Any torchvision or timm classifier name.").strip()
        publish("model.other", None, "")
        weights = side.text_input("Weights file on this computer", key="model.weights", placeholder="/path/to/weights.safetensors").strip()
        publish("model.weights", None, "")
        if name:
            tag = f"-{runner.content_hash(weights.encode())[:8]}" if weights else ""
            result = ModelChoice(name, weights or None, runner.safe_name(name) + tag, name)
    elif choice == UPLOAD:
        side.caption("A TorchScript file and its JSON sidecar: `{\"input_size\": 64, \"mean\": [...], \"std\": [...], \"classes\": [...]}`.")
        pt = side.file_uploader("TorchScript model (.pt)", type=["pt"], key="model.pt")
        js = side.file_uploader("Sidecar (.json)", type=["json"], key="model.json")
        path: Path | None = None
        if pt is not None and js is not None:
            ids = (pt.file_id, js.file_id)
            if st.session_state.get("model.upload_ids") != ids:  # hash and save each upload once
                saved = save_upload(pt.getvalue(), js.getvalue(), pt.name)
                st.session_state["model.upload_ids"] = ids
                st.session_state["model.upload_hash"] = saved.parent.name
            path = find_upload(st.session_state["model.upload_hash"])
        elif st.session_state.get("model.upload_hash"):
            path = find_upload(st.session_state["model.upload_hash"])
        if path is None:
            side.info("Upload both files to use your model.")
        else:
            digest = path.parent.name
            result = ModelChoice(str(path), None, f"{path.stem}-{digest[:8]}", f"upload:{digest}")
    else:
        result = ModelChoice(choice, None, choice, choice)
    if result is not None and (result.param != "efficientnet_lite0" or "model" in st.query_params):
        if result.param == "efficientnet_lite0":
            del st.query_params["model"]
        elif st.query_params.get("model") != result.param:
            st.query_params["model"] = result.param
    return result


def load_model(choice: ModelChoice | None, where=None):
    """The loaded classifier of ``choice``; on a bad model an error line and None."""
    where = where or st.sidebar
    if choice is None:
        return None
    try:
        with st.spinner(f"Loading {choice.name} (once per server) ..."):
            clf = runner.load(choice.spec, choice.weights)  # dgncore keeps it loaded, for the pages and the job queue alike
    except InputError as e:
        where.error(f"Cannot use this model: {one_line(e)}")
        return None
    return clf


def current() -> tuple[ModelChoice | None, Any]:
    """(model choice, classifier) chosen in the sidebar for this run of the app."""
    return st.session_state.get("_model_choice"), st.session_state.get("_classifier")
