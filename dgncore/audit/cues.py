"""Planted cues of different kinds, each with a detector that measures it in any image.

The built-in case (:mod:`dgncore.audit.planted`) plants a magenta corner stamp; an audit that
finds only that one kind of shortcut proves little. Three more kinds, each unlike the
stamp in what it is made of:

- ``stripes`` - a *texture*: faint horizontal stripes (period 4 px at 64 px, amplitude
  0.09) over the whole image. Its detector: the share of the image where the vertical
  period-4 component is strong and at least twice the period-8 one (an edge has both).
- ``sepia`` - a *colour cast*: the whole image toned sepia (85% of the way), like an old
  photograph. Its detector: the share of pixels whose colour lies in the sepia direction.
- ``sticker`` - a *small object in a fixed place*: a yellow disc with a dark centre at
  the top centre. Datasets with it keep every other colour out of saturated yellow (as
  the stamp's keep out of magenta), so its detector - the share of the image in solid
  yellow patches - reads exactly 0 on images without it.
- ``invisible`` - a pattern *a person cannot see* (Adebayo et al., ICLR 2022): one fixed
  field of random +-3/255 grey pixels added to the whole image, below what 8-bit photos
  show to the eye, but kept by an 8-bit PNG. Its detector: the correlation of the image's
  fine detail with the pattern.

Each kind is a :class:`CueKind`: ``apply(images, gen, where)`` puts the cue on the rows
where ``where`` is True, ``score(images)`` -> (n,) and ``clamp(images)`` is applied to
every image of a dataset with that cue (the stamp's palette clamp is in ``render_base``).
The detectors are for measuring planted cases only: the intervention
(:mod:`dgncore.audit.intervention`) never uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

#: the size the cues are designed at (the planted images' size)
BASE = 64
STRIPE_PERIOD = 4
STRIPE_AMPLITUDE = 0.09
#: stripes: period-4 amplitude (luminance units) that counts as striped, and its least ratio to the period-8 one
STRIPE_THRESHOLD = 0.04
STRIPE_RATIO = 2.0
SEPIA_TINT = (1.12, 0.94, 0.70)
SEPIA_STRENGTH = 0.85
#: sepia: a pixel counts when its chroma is at least this long and this close (cosine) to the tint's
SEPIA_MIN_CHROMA = 0.03
SEPIA_MIN_COS = 0.95
STICKER_COLOUR = (1.0, 0.85, 0.0)
#: sticker centre (x, y) and radii, in 64 px units
STICKER_CENTRE = (32.0, 8.0)
STICKER_RADIUS = 4.5
STICKER_DOT = 1.5
#: invisible: the fixed pattern's amplitude (3 of 255 grey levels) and the seed that draws it
INVISIBLE_AMPLITUDE = 3 / 255
INVISIBLE_SEED = 20260
#: every non-sticker colour in a sticker dataset keeps yellowness min(R, G) - B below this
YELLOW_MARGIN = 0.12
YELLOW_THRESHOLD = 0.5


def _to_base(images: torch.Tensor) -> torch.Tensor:
    images = images.float()
    if images.dim() == 3:
        images = images[None]
    if images.shape[-1] != BASE or images.shape[-2] != BASE:
        images = F.interpolate(images, size=(BASE, BASE), mode="bilinear", antialias=True, align_corners=False)
    return images


def _luma(images: torch.Tensor) -> torch.Tensor:
    return (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).unsqueeze(1)


# --------------------------------------------------------------------------- stripes (texture)


def apply_stripes(images: torch.Tensor, gen: torch.Generator, where: torch.Tensor | None = None) -> torch.Tensor:
    n, _, h, _w = images.shape
    period = STRIPE_PERIOD * h / BASE
    phase = torch.rand(n, generator=gen) * 2 * math.pi
    rows = torch.arange(h, dtype=torch.float32)
    wave = STRIPE_AMPLITUDE * torch.cos(2 * math.pi * rows.view(1, h) / period + phase.view(n, 1))  # (n, h)
    striped = (images + wave.view(n, 1, h, 1)).clamp(0, 1)
    if where is None:
        return striped
    return torch.where(where.view(n, 1, 1, 1), striped, images)


def _band_amplitude(g: torch.Tensor, period: int, taps: int = 8) -> torch.Tensor:
    i = torch.arange(taps, dtype=torch.float32)
    kc = torch.cos(2 * math.pi * i / period).view(1, 1, taps, 1)
    ks = torch.sin(2 * math.pi * i / period).view(1, 1, taps, 1)
    gp = F.pad(g, (0, 0, taps // 2, taps - 1 - taps // 2), mode="replicate")
    c, s = F.conv2d(gp, kc), F.conv2d(gp, ks)
    amp = torch.sqrt(c * c + s * s) * 2 / taps
    return F.avg_pool2d(amp, (1, 7), stride=1, padding=(0, 3), count_include_pad=False)


def stripes_score(images: torch.Tensor) -> torch.Tensor:
    """(n,) share of the image where horizontal period-4 stripes are present."""
    g = _luma(_to_base(images))
    a4 = _band_amplitude(g, STRIPE_PERIOD)
    a8 = _band_amplitude(g, 2 * STRIPE_PERIOD)
    return ((a4 >= STRIPE_THRESHOLD) & (a4 >= STRIPE_RATIO * a8)).float().mean((1, 2, 3))


# --------------------------------------------------------------------------- sepia (colour cast)


def apply_sepia(images: torch.Tensor, gen: torch.Generator, where: torch.Tensor | None = None) -> torch.Tensor:
    del gen  # deterministic
    tint = torch.tensor(SEPIA_TINT).view(1, 3, 1, 1)
    toned = ((1 - SEPIA_STRENGTH) * images + SEPIA_STRENGTH * _luma(images) * tint).clamp(0, 1)
    if where is None:
        return toned
    return torch.where(where.view(-1, 1, 1, 1), toned, images)


def sepia_score(images: torch.Tensor) -> torch.Tensor:
    """(n,) share of pixels whose colour lies in the sepia direction."""
    x = images.float()
    if x.dim() == 3:
        x = x[None]
    chroma = x - x.mean(1, keepdim=True)
    d = torch.tensor(SEPIA_TINT)
    d = (d - d.mean()) / (d - d.mean()).norm()
    length = chroma.norm(dim=1)
    cos = (chroma * d.view(1, 3, 1, 1)).sum(1) / length.clamp_min(1e-6)
    return ((length >= SEPIA_MIN_CHROMA) & (cos >= SEPIA_MIN_COS)).float().mean((1, 2))


# --------------------------------------------------------------------------- sticker (small object, fixed place)


def sticker_mask(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(disc, dot) masks (size, size) of the sticker, soft-edged."""
    s = size / BASE
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5, torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    r = torch.sqrt((xx - STICKER_CENTRE[0] * s) ** 2 + (yy - STICKER_CENTRE[1] * s) ** 2)
    disc = (STICKER_RADIUS * s + 0.5 - r).clamp(0, 1)
    dot = (STICKER_DOT * s + 0.5 - r).clamp(0, 1)
    return disc, dot


def apply_sticker(images: torch.Tensor, gen: torch.Generator, where: torch.Tensor | None = None) -> torch.Tensor:
    n, _, h, _w = images.shape
    disc, dot = sticker_mask(h)
    jitter = torch.rand(n, 3, generator=gen) * torch.tensor([0.08, 0.1, 0.08])
    colour = (torch.tensor(STICKER_COLOUR) + torch.tensor([-1.0, -1.0, 1.0]) * jitter).clamp(0, 1).view(n, 3, 1, 1)
    dark = torch.full((1, 3, 1, 1), 0.1)
    stuck = images * (1 - disc) + colour * disc
    stuck = stuck * (1 - dot) + dark * dot
    if where is None:
        return stuck
    return torch.where(where.view(n, 1, 1, 1), stuck, images)


def yellow_clamp(images: torch.Tensor) -> torch.Tensor:
    """Keep every colour out of saturated yellow: B >= min(R, G) - margin."""
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    return torch.stack([r, g, torch.maximum(b, torch.minimum(r, g) - YELLOW_MARGIN)], 1)


def solid_patch_share(colour_map: torch.Tensor, window: int, threshold: float) -> torch.Tensor:
    """(n,) the share of an image inside *solid* patches of a colour: pixels whose
    neighbourhood (``window`` px at 64 px, scaled with the image, odd) has a mean of
    ``colour_map`` (n, H, W) at least ``threshold``. Scattered saturated noise scores ~0."""
    m = colour_map[:, None]
    w = max(3, round(window * m.shape[-1] / BASE) | 1)
    local = F.avg_pool2d(m, w, stride=1, padding=w // 2, count_include_pad=False)
    return (local >= threshold).float().mean((1, 2, 3))


def sticker_score(images: torch.Tensor) -> torch.Tensor:
    """(n,) share of the image in solid yellow patches (3/64 of the side wide)."""
    x = images.float()
    if x.dim() == 3:
        x = x[None]
    return solid_patch_share((torch.minimum(x[:, 0], x[:, 1]) - x[:, 2]).clamp(0, 1), 3, YELLOW_THRESHOLD)


# --------------------------------------------------------------------------- invisible (a faint fixed pattern)


def invisible_pattern(size: int = BASE) -> torch.Tensor:
    """(1, 1, size, size) the fixed +-1 field (drawn at 64 px, nearest-scaled)."""
    gen = torch.Generator().manual_seed(INVISIBLE_SEED)
    field = torch.where(torch.rand(1, 1, BASE, BASE, generator=gen) < 0.5, -1.0, 1.0)
    return field if size == BASE else F.interpolate(field, size=(size, size), mode="nearest")


def apply_invisible(images: torch.Tensor, gen: torch.Generator, where: torch.Tensor | None = None) -> torch.Tensor:
    del gen  # the same pattern on every image: that is what a model can learn
    marked = (images + INVISIBLE_AMPLITUDE * invisible_pattern(images.shape[-1])).clamp(0, 1)
    if where is None:
        return marked
    return torch.where(where.view(-1, 1, 1, 1), marked, images)


def invisible_score(images: torch.Tensor) -> torch.Tensor:
    """(n,) correlation, clipped to [0, 1], of the image's fine detail (luminance minus its
    3x3 mean) with the pattern: near 0 without it, far above that with it."""
    g = _luma(_to_base(images))
    fine = g - F.avg_pool2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    pat = invisible_pattern()
    pat = pat - F.avg_pool2d(F.pad(pat, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    fine, pat = fine - fine.mean((2, 3), keepdim=True), pat - pat.mean()
    corr = (fine * pat).sum((1, 2, 3)) / (fine.flatten(1).norm(dim=1) * pat.norm()).clamp_min(1e-8)
    return corr.clamp(0, 1)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class CueKind:
    name: str
    #: what it is, for people (e.g. in a report's description)
    description: str
    #: what its score measures
    score_name: str
    apply: Callable[[torch.Tensor, torch.Generator, "torch.Tensor | None"], torch.Tensor]
    score: Callable[[torch.Tensor], torch.Tensor]
    clamp: Callable[[torch.Tensor], torch.Tensor] = lambda images: images


NEW_KINDS: dict[str, CueKind] = {
    "stripes": CueKind("stripes", "faint horizontal stripes over the whole image (a texture)",
                       "stripes: share of the image with horizontal period-4 stripes", apply_stripes, stripes_score),
    "sepia": CueKind("sepia", "the whole image toned sepia (a colour cast)",
                     "sepia: share of pixels in the sepia colour direction", apply_sepia, sepia_score),
    "sticker": CueKind("sticker", "a yellow disc with a dark centre at the top centre (a small object in a fixed place)",
                       "sticker: share of the image in solid yellow patches", apply_sticker, sticker_score, yellow_clamp),
    "invisible": CueKind("invisible", "a faint fixed pattern of +-3/255 grey pixels over the whole image (invisible to a person)",
                         "invisible: correlation of the image's fine detail with the pattern", apply_invisible, invisible_score),
}

__all__ = ["CueKind", "NEW_KINDS", "apply_invisible", "apply_sepia", "apply_sticker", "apply_stripes", "invisible_pattern", "invisible_score", "sepia_score", "solid_patch_share", "sticker_score", "stripes_score", "yellow_clamp"]
