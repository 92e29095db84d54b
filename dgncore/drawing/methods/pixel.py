"""The raw pixels as the thing optimised: the noise baseline every prior is measured against."""

from __future__ import annotations

import torch

from dgncore.drawing.presets import AuditUse, Method, Preset, sized_for_audit
from dgncore.drawing.sources import ImageSource, PixelSource


def _pixel(preset: Preset, n: int, device: torch.device) -> ImageSource:
    return PixelSource(preset, n)


_PIXEL = Preset(name="pixel", method="pixel", steps=200, optimizer="adam", lr=0.05, early_stop=0.99)

PIXEL = Method(
    "pixel", "Raw pixels: the noise baseline",
    "The pixels themselves change. The classifier is convinced quickly, but the picture usually looks like noise to us.",
    _pixel, (_PIXEL,),
    # the audit draws it as the baseline; its images are adversarial noise, so pasting them
    # would measure adversarial fragility, not bias
    AuditUse(sized_for_audit(_PIXEL), default=True, intervention=False),
)
