"""Offline training images for the denoising autoencoder: made procedurally, or cropped
from a folder of photos.

No ImageNet photos exist offline, so the built-in decoder learns from images that are
cheap to make and share natural images' low-level statistics (Baradad et al. 2021,
"Learning to see by looking at noise"):

- ``dead-leaves``: random occluding ellipses and rectangles with power-law sizes (the
  scale invariance and sharp occlusion edges of natural scenes), muted natural-ish
  colours, some of them textured (gradients, stripes, 1/f noise), an optional blur;
- ``pink-noise``: coloured 1/f^beta noise (the natural power spectrum, no edges);
- ``procedural``: the two mixed, 3 dead-leaves images to 1 noise image.

Everything is vectorised over the batch in torch, so making a batch costs a small part
of a training step.
"""

from __future__ import annotations

import math
from pathlib import Path
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
    shapes: int = 120,
    r_min: float = 0.015,
    r_max: float = 0.45,
    power: float = 3.0,
    texture: float = 0.5,
    blur: float = 0.5,
) -> torch.Tensor:
    """(n, 3, size, size) dead-leaves images in [0, 1].

    ``shapes`` leaves fall back to front on a background gradient; radii follow
    p(r) ~ r^-power between ``r_min`` and ``r_max`` (fractions of the image side); a
    fraction ``texture`` of leaves carry a gradient, stripes or noise; a fraction
    ``blur`` of images are blurred by a Gaussian of sigma up to 1.5 px (defocus).
    """
    s = torch.linspace(-1.0, 1.0, size)
    yy, xx = s.view(1, size, 1), s.view(1, 1, size)
    # background: a smooth gradient between two colours
    c0, c1 = _natural_colours((n,), gen), _natural_colours((n,), gen)
    th = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    t = (0.5 + 0.5 * (torch.cos(th) * xx + torch.sin(th) * yy) / math.sqrt(2)).unsqueeze(1)
    img = c0.view(n, 3, 1, 1) * (1 - t) + c1.view(n, 3, 1, 1) * t
    noise_tex = pink_noise(n, size, gen, colour=False)[:, :2] * 2 - 1  # two grey textures per image

    # per-leaf parameters, (n, shapes); radii by inverse-CDF sampling of the power law
    u = torch.rand(n, shapes, generator=gen)
    a, b = r_min ** (1 - power), r_max ** (1 - power)
    radius = 2 * (a + u * (b - a)) ** (1 / (1 - power))  # in [-1, 1] units
    aspect = torch.exp(torch.randn(n, shapes, generator=gen) * 0.45)
    ra, rb = radius * aspect.sqrt(), radius / aspect.sqrt()
    cx, cy = torch.rand(2, n, shapes, generator=gen) * 2.4 - 1.2
    ang = torch.rand(n, shapes, generator=gen) * math.pi
    ca, sa = torch.cos(ang), torch.sin(ang)
    is_rect = torch.rand(n, shapes, generator=gen) < 0.35
    col_a, col_b = _natural_colours((n, shapes), gen), _natural_colours((n, shapes), gen)
    tex_kind = torch.randint(0, 3, (n, shapes), generator=gen)
    tex_on = torch.rand(n, shapes, generator=gen) < texture
    freq = 4 + 20 * torch.rand(n, shapes, generator=gen)
    tex_amp = 0.15 + 0.35 * torch.rand(n, shapes, generator=gen)

    for k in range(shapes):
        dx, dy = xx - cx[:, k, None, None], yy - cy[:, k, None, None]
        pu = dx * ca[:, k, None, None] + dy * sa[:, k, None, None]
        pv = dy * ca[:, k, None, None] - dx * sa[:, k, None, None]
        nu, nv = pu / ra[:, k, None, None], pv / rb[:, k, None, None]
        ellipse = nu * nu + nv * nv <= 1
        rect = (nu.abs() <= 0.8) & (nv.abs() <= 0.8)
        mask = torch.where(is_rect[:, k, None, None], rect, ellipse).unsqueeze(1)
        kind = tex_kind[:, k, None, None]
        pattern = torch.where(
            kind == 0, nu.clamp(-1, 1),
            torch.where(kind == 1, torch.sin(freq[:, k, None, None] * pu), noise_tex[:, 0] * 2.5),
        )
        weight = (tex_on[:, k] * tex_amp[:, k]).view(n, 1, 1) * pattern
        colour = col_a[:, k].view(n, 3, 1, 1) + weight.unsqueeze(1) * (col_b[:, k] - col_a[:, k]).view(n, 3, 1, 1)
        img = torch.where(mask, colour, img)

    img = img + 0.04 * noise_tex[:, 1:2]  # a little fine grain everywhere
    if blur > 0:
        img = _gaussian_blur(img, torch.where(torch.rand(n, generator=gen) < blur, 1.5 * torch.rand(n, generator=gen), 0.0))
    return img.clamp(0, 1)


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


class PhotoCrops:
    """Random crops of a fixed set of photos: random scale (a quarter of the short side
    up to all of it), position and horizontal flip, resized to ``size`` with antialiasing."""

    def __init__(self, photos: list[torch.Tensor], size: int) -> None:
        if not photos:
            raise ValueError("no photos")
        self.photos = photos
        self.size = size

    @classmethod
    def from_folder(cls, folder: str | Path, size: int, max_side: int = 512, limit: int = 5000) -> "PhotoCrops":
        """Every readable image under ``folder`` (recursively, through the guarded loader),
        downscaled so its short side is at most ``max_side``; unreadable files are skipped."""
        from .data import IMAGE_SUFFIXES, open_image
        from .errors import InputError

        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"image folder {str(folder)[:120]} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        photos: list[torch.Tensor] = []
        for p in files:
            try:
                im = open_image(p)
            except InputError:
                continue
            if min(im.size) < 32:
                continue
            scale = max_side / min(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), resample=3)
            photos.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
        if not photos:
            raise InputError(f"no readable images (at least 32x32 pixels) in {root.name[:80]}")
        return cls(photos, size)

    def __len__(self) -> int:
        return len(self.photos)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        out = []
        for i in torch.randint(0, len(self.photos), (n,), generator=gen).tolist():
            p = self.photos[i]
            h, w = p.shape[1:]
            side = int(min(h, w) * (0.25 + 0.75 * float(torch.rand(1, generator=gen))))
            side = max(side, min(h, w, 16))
            y = int(torch.randint(0, h - side + 1, (1,), generator=gen))
            x = int(torch.randint(0, w - side + 1, (1,), generator=gen))
            crop = p[:, y : y + side, x : x + side].unsqueeze(0).float() / 255
            crop = F.interpolate(crop, size=self.size, mode="bilinear", antialias=True, align_corners=False)
            if bool(torch.rand(1, generator=gen) < 0.5):
                crop = crop.flip(-1)
            out.append(crop)
        return torch.cat(out).clamp(0, 1)


__all__ = ["KINDS", "PhotoCrops", "dead_leaves", "pink_noise", "procedural_batch", "procedural_images"]
