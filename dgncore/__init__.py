"""DGN Explorer's core: activation maximisation with deep generative networks
(Despraz et al., IJCCI 2017), importable without Streamlit, on CPU or GPU.

    from dgncore import load_classifier, parse_target, make_preset, generate
    clf = load_classifier("efficientnet_lite0")
    records = generate(clf, [parse_target("class:tench", clf)], make_preset(), "out/")

The names below are loaded on first use: importing a light part of dgncore (its errors,
limits or job specs) does not import torch, so a web page that only shows saved pictures
draws without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Target": "dgncore.drawing.objectives",
    "parse_target": "dgncore.drawing.objectives",
    "optimize": "dgncore.drawing.optimize",
    "make_preset": "dgncore.drawing.registry",
    "InputError": "dgncore.errors",
    "Classifier": "dgncore.models.classifiers",
    "load_classifier": "dgncore.models.classifiers",
    "class_targets": "dgncore.runs",
    "draw_classes": "dgncore.runs",
    "generate": "dgncore.runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dgncore' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
