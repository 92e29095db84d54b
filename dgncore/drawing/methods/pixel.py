"""The raw pixels as the thing optimised: the noise baseline every prior is measured against."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dgncore.drawing.presets import AuditUse, Method, Preset, sized_for_audit

if TYPE_CHECKING:  # torch and the sources are imported when a picture is made: listing the methods needs neither
    import torch

    from dgncore.drawing.sources import ImageSource


def _pixel(preset: Preset, n: int, device: torch.device) -> ImageSource:
    from dgncore.drawing.sources import PixelSource

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
