"""Pixels drawn through their frequencies and colours (Lucid's parameterisation): ``fourier``,
and ``natural``, the same with the colours and spectrum measured on real photographs.

``natural`` is the default method: measured best of ours for people (bench/README.md,
"Quality"), with Lucent's standard transformations (``transform_set="lucent"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dgncore.drawing.presets import AuditUse, Method, Preset, sized_for_audit
from dgncore.paths import DEFAULT_STATS

if TYPE_CHECKING:  # torch and the sources are imported when a picture is made: listing the methods needs neither
    import torch

    from dgncore.drawing.sources import ImageSource


def _fourier(preset: Preset, n: int, device: torch.device) -> ImageSource:
    from dgncore.drawing.sources import FourierSource

    return FourierSource(preset, n)


def _natural(preset: Preset, n: int, device: torch.device) -> ImageSource:
    from dgncore.drawing.sources import FourierSource
    from dgncore.prior.photostats import load_photo_stats

    return FourierSource(preset, n, load_photo_stats(preset.photo_stats or DEFAULT_STATS))


_FOURIER = Preset(name="fourier", method="fourier", steps=256, optimizer="adam", lr=0.05, early_stop=0.99, transforms=True)
_NATURAL = Preset(name="natural", method="natural", steps=160, optimizer="adam", lr=0.03, lr_schedule="cosine", transforms=True,
                  transform_set="lucent", photo_stats=str(DEFAULT_STATS))

NATURAL = Method(
    "natural", "Photo-like: colours and detail of real photos",
    "Like Fourier, but with the colours and the balance of coarse and fine detail measured on real photographs.",
    _natural, (_NATURAL,), AuditUse(sized_for_audit(_NATURAL), default=False),
)
FOURIER = Method(
    "fourier", "Fourier: Lucid-style",
    "Pixels change through their frequencies and colours, checked under small shifts and turns. Detailed textures; fast.",
    _fourier, (_FOURIER,), AuditUse(sized_for_audit(_FOURIER), default=False),
)
