"""The ready-made examples that ship with the dashboard (``dashboard/examples/``).

They are ordinary results (WebP + JSON, scored on the WebP as saved, with a second
opinion), made by one command (see ``dashboard/examples/README.md``), so that neither a
fresh local app nor the hosted demo opens on an empty page. The start page shows a strip
of them, the gallery lists them, a link to exactly their settings opens on them without
computing anything, and their measured step rates are the first estimate of how long a
run takes (:mod:`dashboard.eta`). No Streamlit here.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from dashboard import eta
from dashboard.records import attach_files

#: where the examples are; ``DGN_EXAMPLES`` points elsewhere (an empty folder: none)
EXAMPLES = Path(__file__).resolve().parent / "examples"


def examples_root() -> Path:
    raw = os.environ.get("DGN_EXAMPLES")
    return Path(raw).expanduser() if raw else EXAMPLES


@functools.lru_cache(maxsize=4)
def _load(root: str) -> tuple[dict[str, Any], ...]:
    from dgncore.result_files import scan_results

    out = []
    for rec in scan_results(Path(root)):
        attach_files(rec, (Path(root) / rec["path"]).parent)
        rec["example"] = True
        out.append(rec)
    eta.observe_all(out, prior=True)
    return tuple(out)


def example_records() -> list[dict[str, Any]]:
    """Every shipped example (fresh copies: a page may annotate them)."""
    return [dict(r) for r in _load(str(examples_root()))]


def _key(model: str, target: str, seed: int, hyperparameters: dict[str, Any]) -> tuple:
    from dgncore.result_files import settings_key

    return (model, target, int(seed), settings_key(hyperparameters))


def find_example(model: str, target: str, preset, seed: int) -> dict[str, Any] | None:
    """The example made with exactly these settings, if one ships."""
    from dgncore.result_files import preset_record

    want = _key(model, target, seed, preset_record(preset))
    for rec in example_records():
        if _key(rec.get("model", ""), rec.get("target", ""), rec.get("seed", -1), rec.get("hyperparameters") or {}) == want:
            return rec
    return None


def likeness(rec: dict[str, Any]) -> tuple[float, float]:
    """A sort key, best first: how near the picture sits to a real photo of its class in a
    second network's features (``photo_rank``, 1 = its own class's photo is the nearest),
    then that network's probability (``bench/nearest_photos.py`` measures both)."""
    op = rec.get("second_opinion") or {}
    rank = op.get("photo_rank")
    return (float(rank) if rank is not None else float("inf"), -((op.get("p_target") or 0) + (rec.get("p_target") or 0) / 100))


def strip(n: int = 6) -> list[dict[str, Any]]:
    """``n`` examples for the start page, one per class, most like a real photo first:
    the default method's (the pictures a person can name), then other methods' only where
    the default has too few. Other methods are a click away in the gallery."""
    from dgncore.drawing.registry import DEFAULT_METHOD

    classes = [r for r in example_records() if r.get("target_kind") == "class"]
    ranked = sorted(classes, key=lambda r: (r.get("method") != DEFAULT_METHOD, likeness(r)))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rec in ranked:
        if rec.get("target") not in seen and len(out) < n:
            seen.add(rec.get("target"))
            out.append(rec)
    return out


def other_method(rec: dict[str, Any]) -> str | None:
    """Another method whose example of the same class ships (for a side-by-side link), or None."""
    for other in example_records():
        if other.get("target") == rec.get("target") and other.get("method") != rec.get("method") and other.get("seed") == rec.get("seed"):
            return other["method"]
    return None
