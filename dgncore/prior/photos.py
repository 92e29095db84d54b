"""Random crops of a folder of photographs: what a decoder learns from when it is trained on photos."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


class PhotoCrops:
    """Random crops of a fixed set of photos: random scale (``min_scale`` of the short side,
    a quarter by default, up to all of it), position and horizontal flip, resized to
    ``size`` with antialiasing, and a mild colour jitter (brightness, contrast, saturation,
    each within +-``jitter``)."""

    def __init__(self, photos: list[torch.Tensor], size: int, jitter: float = 0.0, names: list[str] | None = None,
                 min_scale: float = 0.25, flip: bool = True) -> None:
        if not photos:
            raise ValueError("no photos")
        self.photos = photos
        self.size = size
        self.jitter = jitter
        self.names = names or []
        self.min_scale = min_scale
        self.flip = flip

    @classmethod
    def from_folder(cls, folder: str | Path, size: int, max_side: int = 512, limit: int = 5000, jitter: float = 0.0,
                    holdout: bool = False, min_scale: float = 0.25, flip: bool = True) -> "PhotoCrops":
        """Every readable image under ``folder`` (recursively, sorted by path, through the
        guarded loader), downscaled so its short side is at most ``max_side``; unreadable
        files are skipped. ``holdout``: leave out the fixed held-out tenth
        (:func:`dgncore.data.holdout_split`), kept for evaluation."""
        from dgncore.data import holdout_split, image_files

        files = image_files(folder, limit)
        if holdout:
            files = holdout_split(files)[0]
        return cls.from_files(files, size, max_side, jitter, root=Path(folder), min_scale=min_scale, flip=flip)

    @classmethod
    def from_files(cls, files: Sequence[Path], size: int, max_side: int = 512, jitter: float = 0.0,
                   root: Path | None = None, min_scale: float = 0.25, flip: bool = True) -> "PhotoCrops":
        from dgncore.data import open_image
        from dgncore.errors import InputError

        photos: list[torch.Tensor] = []
        names: list[str] = []
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
            names.append(p.relative_to(root).as_posix() if root is not None else p.name)
        if not photos:
            where = root.name[:80] if root is not None else "the given files"
            raise InputError(f"no readable images (at least 32x32 pixels) in {where}")
        return cls(photos, size, jitter, names, min_scale, flip)

    def __len__(self) -> int:
        return len(self.photos)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        out = []
        for i in torch.randint(0, len(self.photos), (n,), generator=gen).tolist():
            p = self.photos[i]
            h, w = p.shape[1:]
            side = int(min(h, w) * (self.min_scale + (1 - self.min_scale) * float(torch.rand(1, generator=gen))))
            side = max(side, min(h, w, 16))
            y = int(torch.randint(0, h - side + 1, (1,), generator=gen))
            x = int(torch.randint(0, w - side + 1, (1,), generator=gen))
            crop = p[:, y : y + side, x : x + side].unsqueeze(0).float() / 255
            crop = F.interpolate(crop, size=self.size, mode="bilinear", antialias=True, align_corners=False)
            if bool(torch.rand(1, generator=gen) < 0.5) and self.flip:
                crop = crop.flip(-1)
            if self.jitter:
                crop = _colour_jitter(crop, self.jitter, gen)
            out.append(crop)
        return torch.cat(out).clamp(0, 1)


def _colour_jitter(img: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Scale brightness, contrast and saturation each by a factor in [1 - amount, 1 + amount]."""
    b, c, s = (1 + amount * (2 * torch.rand(3, generator=gen) - 1)).tolist()
    img = img * b
    mean = img.mean()
    img = (img - mean) * c + mean
    grey = img.mean(1, keepdim=True)
    return ((img - grey) * s + grey).clamp(0, 1)
