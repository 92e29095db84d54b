"""The methods an audit draws with (read from :mod:`dgncore.drawing.registry`), the preset
each uses at the audited classifier's size, and the seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dgncore.drawing.methods.paper import AUDIT_EARLY_STOP
from dgncore.drawing.presets import Preset
from dgncore.drawing.registry import AUDIT_DEFAULT_METHODS as DEFAULT_METHODS
from dgncore.drawing.registry import METHODS as AUDIT_METHODS
from dgncore.drawing.registry import REGISTRY
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier

DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)

__all__ = ["AUDIT_EARLY_STOP", "AUDIT_METHODS", "DEFAULT_METHODS", "DEFAULT_SEEDS", "method_preset", "parse_methods", "parse_seeds"]


def method_preset(method: str, classifier: Classifier, steps: int | None = None, early_stop: float | None = None,
                  checkpoint: str | Path | None = None) -> tuple[Preset | None, str | None]:
    """The preset an audit uses for ``method`` (the method's own audit settings, at the
    classifier's input size), or (None, reason) when it cannot run here. ``early_stop``:
    None keeps the method's audit setting, 0 turns it off."""
    if method not in REGISTRY:
        raise InputError(f"unknown audit method {method[:30]!r}: choose from {', '.join(AUDIT_METHODS)}")
    preset, why = REGISTRY[method].audit.preset(classifier.input_size, steps, str(checkpoint) if checkpoint else None)
    if preset is not None and early_stop is not None:
        preset = preset.replace(early_stop=early_stop if early_stop > 0 else None)
    return preset, why


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        try:
            seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
        except ValueError as e:
            raise InputError(f"bad seeds {text[:40]!r}: write a comma list like 0,1,2") from e
    if not seeds or len(seeds) > 20 or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise InputError("seeds must be 1-20 distinct non-negative whole numbers, e.g. 0,1,2")
    return seeds


def parse_methods(text: str | Sequence[str]) -> list[str]:
    items = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in items if m not in AUDIT_METHODS]
    if not items or bad:
        raise InputError(f"bad methods {','.join(bad)[:40] or '(none)'}: choose from {', '.join(AUDIT_METHODS)}")
    return list(dict.fromkeys(items))
