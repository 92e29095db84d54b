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
    from dgncore.runs import _canon

    return (model, target, int(seed), _canon(hyperparameters))


def find_example(model: str, target: str, preset, seed: int) -> dict[str, Any] | None:
    """The example made with exactly these settings, if one ships."""
    from dgncore.result_files import preset_record

    want = _key(model, target, seed, preset_record(preset))
    for rec in example_records():
        if _key(rec.get("model", ""), rec.get("target", ""), rec.get("seed", -1), rec.get("hyperparameters") or {}) == want:
            return rec
    return None


def strip(n: int = 6) -> list[dict[str, Any]]:
    """``n`` examples for the start page, one per class, taking turns between the methods:
    each method's examples that a second network finds most convincing, so the first
    screen shows real likenesses and what each method looks like."""

    def score(r: dict[str, Any]) -> float:
        return ((r.get("second_opinion") or {}).get("p_target") or 0) + (r.get("p_target") or 0) / 100

    by_method: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(example_records(), key=score, reverse=True):
        by_method.setdefault(rec.get("method", ""), []).append(rec)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    queues = list(by_method.values())
    while len(out) < n and any(queues):
        for q in queues:
            while q and q[0].get("target") in seen:
                q.pop(0)
            if q and len(out) < n:
                seen.add(q[0].get("target"))
                out.append(q.pop(0))
    return out
