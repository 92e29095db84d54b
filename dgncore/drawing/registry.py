"""Every drawing method, in the order front ends list them; the first is the default.

Every list of methods in DGN Explorer (the command line's choices, the dashboard's menus,
the audit's defaults, the intervention's) is read from here. To add a method, declare it
in a family file of :mod:`dgncore.drawing.methods` and list it below.

``natural`` leads because it measured best of ours for people (bench/README.md,
"Quality"); the paper's two methods follow, one click away.
"""

from __future__ import annotations

from typing import Any

from dgncore.drawing.methods import fourier, paper, pixel
from dgncore.drawing.presets import Method, Preset
from dgncore.errors import InputError

_ALL: tuple[Method, ...] = (fourier.NATURAL, paper.PRETRAINED, paper.UNTRAINED, fourier.FOURIER, pixel.PIXEL)

REGISTRY: dict[str, Method] = {m.name: m for m in _ALL}
METHODS: tuple[str, ...] = tuple(REGISTRY)
DEFAULT_METHOD = METHODS[0]
#: every preset of every method, by name (a method's name gives its default preset)
PRESETS: dict[str, Preset] = {p.name: p for m in _ALL for p in m.presets}
#: what an audit draws with when it names no methods, and whose images the intervention pastes
AUDIT_DEFAULT_METHODS: tuple[str, ...] = tuple(m.name for m in _ALL if m.audit.default)
INTERVENTION_METHODS: tuple[str, ...] = tuple(m.name for m in _ALL if m.audit.intervention)


def get_method(name: str) -> Method:
    """The method called ``name``, or an InputError that lists the others."""
    key = str(name).strip().lower()
    if key not in REGISTRY:
        raise InputError(f"unknown method {str(name)[:40]!r}: choose one of {', '.join(METHODS)}")
    return REGISTRY[key]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a method name gives its default preset."""
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise InputError(f"unknown method or preset {str(name)[:40]!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


def make_preset(method: str = DEFAULT_METHOD, steps: int | None = None, size: int | None = None, width: float | None = None, **overrides: Any) -> Preset:
    """The preset called ``method`` with the options a person gave (:meth:`Preset.with_options`)."""
    return get_preset(method).with_options(steps=steps, size=size, width=width, **overrides)


def method_label(name: str) -> str:
    """How a method is named to people (an unknown id is its own label)."""
    return REGISTRY[name].label if name in REGISTRY else name


def method_blurb(name: str) -> str:
    """One plain sentence on what the method changes and what its pictures tend to look like."""
    return REGISTRY[name].blurb if name in REGISTRY else ""
