"""How well a decoder can draw given images: fit alpha (the only thing the pretrained method trains) through the frozen decoder."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dgncore.errors import InputError
from dgncore.models.generators import Generator


def fit_codes(decoder: Generator, mean_code: torch.Tensor, images: torch.Tensor, steps: int = 100, lr: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-image MSE, the fitted images) of the best codes found for ``images`` (B, 3, S, S)
    in [0, 1] through a frozen ``decoder``: Adam on alpha from the mean code, through the
    same ReLU as the pretrained method's feature layer. The encoder plays no part, so
    decoders trained any way (or whose encoder is gone) compare on equal terms: this is
    what the method can draw."""
    decoder = decoder.eval()
    alpha = mean_code.detach().reshape(1, -1).repeat(len(images), 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([alpha], lr=lr)
    for _ in range(steps):
        err = (decoder(torch.relu(alpha)) - images).pow(2).mean((1, 2, 3))
        opt.zero_grad(set_to_none=True)
        err.sum().backward()
        opt.step()
    with torch.no_grad():
        fitted = decoder(torch.relu(alpha))
        return (fitted - images).pow(2).mean((1, 2, 3)), fitted


def heldout_photos(folder: str | Path, size: int, limit: int | None = None) -> torch.Tensor:
    """The held-out tenth of a photo folder (:func:`dgncore.data.holdout_split`) as centre
    crops of ``size`` pixels in [0, 1]."""
    from dgncore.data import holdout_split, image_files, load_image

    files = holdout_split(image_files(folder))[1][:limit]
    out = []
    for f in files:
        img = load_image(f)
        side = min(img.shape[1:])
        y, x = (img.shape[1] - side) // 2, (img.shape[2] - side) // 2
        out.append(F.interpolate(img[None, :, y : y + side, x : x + side], size=size, mode="bilinear", antialias=True, align_corners=False)[0])
    if not out:
        raise InputError(f"no held-out photos in {Path(folder).name[:80]}")
    return torch.stack(out).clamp(0, 1)
