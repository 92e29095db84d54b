"""Saved results read back: a record per JSON, a folder's scan and index, and the content
hashes by which a record names its decoder and photo statistics.

No torch here: the start page and the gallery show saved pictures with these alone
(:mod:`dgncore.results` makes and scores them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from dgncore.data import write_json
from dgncore.drawing.presets import Preset
from dgncore.errors import InputError

VERSION = 1
INDEX = "index.json"


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content (computed once per file version)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def decoder_record(checkpoint: str | Path) -> dict[str, Any]:
    """What a result says of the decoder it was drawn with: file name and content hash
    (never a path of this machine), the generator config stored in the file, and how the
    decoder was trained (from its JSON sidecar, where there is one)."""
    from dgncore.prior.decoder import decoder_config

    path = Path(checkpoint)
    out: dict[str, Any] = {"file": path.name, "sha256": file_sha256(path), "generator": decoder_config(path).to_dict()}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file() and sidecar.stat().st_size < 10 * 1024**2:
        try:
            meta = json.loads(sidecar.read_text("utf-8"))
        except ValueError:
            meta = {}
        data = meta.get("data") or {}
        out["training"] = {k: v for k, v in {
            "data": data.get("kind"), "photos": data.get("photos"), "steps": meta.get("steps_done"),
            "seconds": meta.get("seconds"), "final_pixel_loss": meta.get("final_pixel_loss", meta.get("final_loss")),
        }.items() if v is not None}
    return out


def preset_record(preset: Preset) -> dict[str, Any]:
    """The settings a result records, and that a cached result must match: the preset, with
    its decoder (and photo statistics) named by file name and content hash, never by a
    path of this machine, and its generator config replaced by the one the decoder really
    has (the preset's own is not used by the pretrained method)."""
    d = preset.to_dict()
    if preset.method == "pretrained" and preset.checkpoint:
        dec = decoder_record(preset.checkpoint)
        d["checkpoint"], d["checkpoint_sha256"], d["generator"] = dec["file"], dec["sha256"], dec["generator"]
    if preset.photo_stats:
        d["photo_stats"], d["photo_stats_sha256"] = Path(preset.photo_stats).name, file_sha256(preset.photo_stats)
    return d


def _canon(obj: Any) -> Any:
    if isinstance(obj, dict):
        return tuple(sorted((k, _canon(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(_canon(v) for v in obj)
    return obj


def settings_key(hyperparameters: dict[str, Any] | None) -> tuple:
    """A result's recorded settings in a form two requests compare by. A setting the record
    lacks is taken at its default: the result was made before the setting existed, and so
    with what it does by default (shipped examples keep matching when a setting is added)."""
    return _canon({**_preset_defaults(), **(hyperparameters or {})})


@functools.lru_cache(maxsize=1)
def _preset_defaults() -> dict[str, Any]:
    """Every Preset setting that has a plain default, once (a gallery compares many records)."""
    return {f.name: f.default for f in dataclasses.fields(Preset) if f.default is not dataclasses.MISSING}


def read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read result {Path(path).name[:80]}: {type(e).__name__}") from e
    if not isinstance(data, dict) or "target" not in data:
        raise InputError(f"{Path(path).name[:80]} is not a DGN Explorer result")
    return data


def scan_results(root: Path) -> list[dict[str, Any]]:
    """All results under ``root`` (recursively), each with ``path`` (its JSON, relative)."""
    root = Path(root)
    out = []
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*.json")):
        if p.name == INDEX or p.name.startswith("."):
            continue
        try:
            rec = read_result(p)
        except InputError:
            continue
        if (p.parent / rec.get("png", "")).is_file():
            rec["path"] = str(p.relative_to(root))
            out.append(rec)
    return out


def write_index(root: Path) -> list[dict[str, Any]]:
    """Rewrite ``root/index.json`` from the results on disk (so it is always consistent)."""
    keep = ("target", "target_label", "target_kind", "model", "method", "preset", "seed", "steps", "seconds", "p_target", "rank", "activation",
            "percentile", "second_opinion", "png", "path", "top5")
    records = [{k: r.get(k) for k in keep} for r in scan_results(root)]
    write_json({"version": VERSION, "count": len(records), "results": records}, Path(root) / INDEX)
    return records
