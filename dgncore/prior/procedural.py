"""Offline training images for the denoising autoencoder, made procedurally (photos are
cropped by :mod:`dgncore.prior.photos`).

No ImageNet photos exist offline, so the built-in decoder learns from images that are
cheap to make and share natural images' low-level statistics (Baradad et al. 2021,
"Learning to see by looking at noise"):

- ``dead-leaves``: random occluding ellipses and rectangles with power-law sizes (the
  scale invariance and sharp occlusion edges of natural scenes), muted natural-ish
  colours, some of them textured (gradients, stripes, 1/f noise), an optional blur;
- ``pink-noise``: coloured 1/f^beta noise (the natural power spectrum, no edges);
- ``procedural``: the two mixed, 3 dead-leaves images to 1 noise image.

Noise is made for the whole batch at once with one FFT; each leaf is painted only inside
its bounding box (NumPy), so a 113 px dead-leaves image costs about 18 ms. Training
keeps a pool of them and refreshes a few per step (:mod:`pretrain`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Kind = Literal["dead-leaves", "pink-noise", "procedural"]
KINDS: tuple[str, ...] = ("dead-leaves", "pink-noise", "procedural")

#: Lucid's colour decorrelation matrix (ImageNet colour covariance, Cholesky): colours
#: drawn through it have natural images' correlation between channels.
_COLOR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR / _COLOR.norm(dim=0).max()


def _natural_colours(shape: Sequence[int], gen: torch.Generator) -> torch.Tensor:
    """Random RGB colours (..., 3) in [0, 1]: mostly muted, correlated across channels."""
    z = torch.randn(*shape, 3, generator=gen) * torch.tensor([1.0, 0.55, 0.35])
    return (0.5 + 0.42 * z @ _COLOR.T).clamp(0, 1)


def pink_noise(n: int, size: int, gen: torch.Generator, colour: bool = True) -> torch.Tensor:
    """(n, 3, size, size) 1/f^beta noise in [0, 1], beta in [1.6, 2.6] per image."""
    if n == 0:
        return torch.empty(0, 3, size, size)
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    f = torch.sqrt(fx * fx + fy * fy).clamp(min=1.0 / size)
    beta = 1.6 + torch.rand(n, 1, 1, 1, generator=gen)
    amp = f.pow(-beta / 2)
    spec = torch.complex(torch.randn(n, 3, *f.shape, generator=gen), torch.randn(n, 3, *f.shape, generator=gen)) * amp
    x = torch.fft.irfft2(spec, s=(size, size))
    if colour:
        x = torch.einsum("nchw,dc->ndhw", x, _COLOR * torch.tensor([1.0, 0.6, 0.4]))
    x = x / x.flatten(1).std(1).view(n, 1, 1, 1).clamp(min=1e-8)
    contrast = 0.12 + 0.15 * torch.rand(n, 1, 1, 1, generator=gen)
    return (0.5 + contrast * x + 0.1 * torch.randn(n, 3, 1, 1, generator=gen)).clamp(0, 1)


def dead_leaves(
    n: int,
    size: int,
    gen: torch.Generator,
    shapes: int = 300,
    r_min: float = 0.02,
    r_max: float = 0.5,
    power: float = 2.6,
    texture: float = 0.5,
    blur: float = 0.5,
) -> torch.Tensor:
    """(n, 3, size, size) dead-leaves images in [0, 1].

    ``shapes`` leaves fall back to front on a background gradient; radii follow
    p(r) ~ r^-power between ``r_min`` and ``r_max`` (fractions of the image side), which
    covers the image at every scale; each image draws a small palette, so that leaves
    share colours as objects in a scene do; a fraction ``texture`` of leaves carry a
    gradient, stripes or 1/f noise; a fraction ``blur`` of images are blurred by a
    Gaussian of sigma up to 1.5 px (defocus). Each leaf is drawn only inside its bounding
    box, so the cost follows the painted area, not shapes x pixels.
    """
    if n == 0:
        return torch.empty(0, 3, size, size)
    seeds = torch.randint(0, 2**62, (n,), generator=gen).tolist()
    tex = (pink_noise(n, size, gen, colour=False)[:, :2] * 2 - 1).numpy()
    out = np.stack([_leaves_one(np.random.default_rng(s), size, tex[i], shapes, r_min, r_max, power, texture) for i, s in enumerate(seeds)])
    img = torch.from_numpy(out).permute(0, 3, 1, 2)
    img = img + 0.03 * torch.from_numpy(tex[:, 1:2])  # a little fine grain everywhere
    if blur > 0:
        img = _gaussian_blur(img, torch.where(torch.rand(n, generator=gen) < blur, 1.5 * torch.rand(n, generator=gen), 0.0))
    return img.clamp(0, 1)


def _palette(rng: np.random.Generator, k: int) -> np.ndarray:
    """k natural-ish RGB colours (k, 3): correlated channels, a per-scene saturation."""
    sat = rng.uniform(0.3, 1.1)
    z = rng.standard_normal((k, 3)) * np.array([1.0, sat, 0.75 * sat])
    return np.clip(0.5 + 0.45 * z @ _COLOR.numpy().T, 0, 1).astype(np.float32)


def _leaves_one(
    rng: np.random.Generator, size: int, tex: np.ndarray, shapes: int,
    r_min: float, r_max: float, power: float, texture: float,
) -> np.ndarray:
    palette = _palette(rng, int(rng.integers(3, 8)))
    a, b = palette[rng.integers(len(palette), size=2)]
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    ramp = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
    img = (a * (1 - ramp[..., None]) + b * ramp[..., None]).astype(np.float32)
    img = np.broadcast_to(img, (size, size, 3)).copy()
    lo, hi = r_min ** (1 - power), r_max ** (1 - power)
    radius = size * (lo + rng.random(shapes) * (hi - lo)) ** (1 / (1 - power))
    aspect = np.exp(rng.standard_normal(shapes) * 0.4)
    centre = rng.uniform(-0.1 * size, 1.1 * size, (shapes, 2))
    angle = rng.uniform(0, np.pi, shapes)
    rect = rng.random(shapes) < 0.35
    colour = palette[rng.integers(len(palette), size=shapes)] + rng.normal(0, 0.06, (shapes, 3)).astype(np.float32)
    colour2 = palette[rng.integers(len(palette), size=shapes)]
    kind = np.where(rng.random(shapes) < texture, rng.integers(1, 4, shapes), 0)
    freq = rng.uniform(0.5, 2.0, shapes)
    for k in range(shapes):
        ra, rb = radius[k] * np.sqrt(aspect[k]), radius[k] / np.sqrt(aspect[k])
        ext = max(ra, rb)
        cy, cx = centre[k]
        y0, y1 = max(int(cy - ext), 0), min(int(cy + ext) + 2, size)
        x0, x1 = max(int(cx - ext), 0), min(int(cx + ext) + 2, size)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        c, s = np.cos(angle[k]), np.sin(angle[k])
        u, v = (dx * c + dy * s) / ra, (dy * c - dx * s) / rb
        mask = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8) if rect[k] else u * u + v * v <= 1
        if kind[k] == 0:
            img[y0:y1, x0:x1][mask] = colour[k]
            continue
        if kind[k] == 1:  # a gradient across the leaf
            t = np.clip(u, -1, 1) * 0.5
        elif kind[k] == 2:  # stripes
            t = 0.5 * np.sin(freq[k] * u * ra)
        else:  # 1/f noise
            t = 1.2 * tex[0, y0:y1, x0:x1]
        patch = colour[k] + t[..., None] * (colour2[k] - colour[k])
        img[y0:y1, x0:x1][mask] = patch[mask]
    return img


def _gaussian_blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image by its own sigma (pixels; 0 leaves it alone), separable 7-tap kernel."""
    n = img.shape[0]
    x = torch.arange(-3, 4, dtype=img.dtype)
    k = torch.exp(-0.5 * (x / sigma.clamp(min=1e-3).view(n, 1)) ** 2)
    k = k / k.sum(1, keepdim=True)  # (n, 7); sigma 0 -> a delta
    c, h, w = img.shape[1:]
    xb = F.pad(img, (3, 3, 3, 3), mode="reflect").reshape(1, n * c, h + 6, w + 6)
    kk = k.repeat_interleave(c, 0)
    xb = F.conv2d(xb, kk.view(n * c, 1, 1, 7), groups=n * c)
    xb = F.conv2d(xb, kk.view(n * c, 1, 7, 1), groups=n * c)
    return xb.view(n, c, h, w)


def procedural_batch(n: int, size: int, gen: torch.Generator, kind: str = "procedural") -> torch.Tensor:
    """(n, 3, size, size) float images in [0, 1] of ``kind`` from ``gen``'s stream."""
    if kind == "dead-leaves":
        return dead_leaves(n, size, gen)
    if kind == "pink-noise":
        return pink_noise(n, size, gen)
    if kind == "procedural":
        n_noise = int((torch.rand(n, generator=gen) < 0.25).sum())
        out = torch.cat([dead_leaves(n - n_noise, size, gen), pink_noise(n_noise, size, gen)])
        return out[torch.randperm(n, generator=gen)]
    raise ValueError(f"unknown procedural image kind {kind!r}: choose one of {', '.join(KINDS)}")


def procedural_images(n: int, size: int = 224, seed: int = 0, kind: str = "procedural") -> torch.Tensor:
    """``n`` procedural images, (n, 3, size, size) float32 in [0, 1]; same seed, same images."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([procedural_batch(min(16, n - i), size, gen, kind) for i in range(0, n, 16)]) if n else torch.empty(0, 3, size, size)


__all__ = ["KINDS", "dead_leaves", "pink_noise", "procedural_batch", "procedural_images"]
