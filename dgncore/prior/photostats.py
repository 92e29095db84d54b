"""Statistics of real photographs that an image parameterisation can carry without any
training: their colour (mean and the square root of the colour covariance) and the mean
amplitude spectrum of their decorrelated colour channels.

The ``natural`` method draws its images in that space: a Fourier image whose amplitude
per frequency and whose colour mixing are those of photographs (MACO, Fel et al. 2023,
keeps the amplitude fixed to that of ImageNet photos and optimises the phase; Lucid used
a 1/f amplitude and a fixed colour matrix). What is learned from the photos is 300 KB of
averages, which may ship; the photos themselves never do.

File: ``photo_stats.safetensors`` (``mean`` (3,), ``colour`` (3, 3), ``spectrum``
(3, S, S // 2 + 1) at ``size`` S = 224) and a JSON sidecar (folder name, photo count,
held-out photos left out, command).
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dgncore.errors import InputError
from dgncore.paths import DEFAULT_STATS

STATS_SIZE = 224


@dataclass(frozen=True)
class PhotoStats:
    #: mean colour of the photos, in [0, 1]
    mean: torch.Tensor
    #: symmetric square root of the colour covariance: decorrelated -> RGB
    colour: torch.Tensor
    #: mean amplitude of the orthonormal 2-D FFT of each decorrelated channel
    spectrum: torch.Tensor

    def spectrum_at(self, size: int) -> torch.Tensor:
        """The amplitude spectrum for a ``size`` x ``size`` image (bilinear in frequency)."""
        if self.spectrum.shape[-2] == size:
            return self.spectrum
        return F.interpolate(self.spectrum[None], size=(size, size // 2 + 1), mode="bilinear", align_corners=False)[0]


def compute_photo_stats(files: list[Path], size: int = STATS_SIZE) -> PhotoStats:
    """Colour statistics and the mean amplitude spectrum of centre crops of ``files``."""
    if len(files) < 2:
        raise InputError("photo statistics need at least 2 photos")
    from dgncore.data import load_for_model  # short side to ``size``, centre crop

    crops = torch.stack([load_for_model(f, size) for f in files])
    mean = crops.mean((0, 2, 3))
    centred = crops - mean.view(1, 3, 1, 1)
    cov = torch.cov(centred.transpose(0, 1).reshape(3, -1))
    evals, evecs = torch.linalg.eigh(cov)
    colour = evecs @ torch.diag(evals.clamp(min=1e-8).sqrt()) @ evecs.T
    decorrelated = torch.einsum("dc,nchw->ndhw", torch.linalg.inv(colour), centred)
    spectrum = torch.fft.rfft2(decorrelated, norm="ortho").abs().mean(0)
    return PhotoStats(mean, colour, spectrum)


def save_photo_stats(stats: PhotoStats, path: str | Path, meta: dict) -> None:
    from safetensors.torch import save

    from dgncore.data import write_bytes, write_json

    path = Path(path)
    tensors = {"mean": stats.mean.float().contiguous(), "colour": stats.colour.float().contiguous(), "spectrum": stats.spectrum.float().contiguous()}
    write_bytes(save(tensors, metadata={"format": "dgn-photo-stats/1"}), path)
    write_json(meta, path.with_suffix(".json"))


@functools.lru_cache(maxsize=4)
def load_photo_stats(path: str | Path = DEFAULT_STATS) -> PhotoStats:
    """Read a statistics file written by :func:`save_photo_stats`; anything else is an InputError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        raise InputError(f"photo statistics {path.name[:80]} is not a .safetensors file that exists (make one with: python -m dgncore photo-stats)")
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("format") != "dgn-photo-stats/1":
                raise InputError(f"{path.name[:80]} is not a photo statistics file")
            t = {k: f.get_tensor(k).float() for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"photo statistics {path.name[:80]} cannot be read ({type(e).__name__})") from e
    if set(t) != {"mean", "colour", "spectrum"} or t["mean"].shape != (3,) or t["colour"].shape != (3, 3) \
            or t["spectrum"].dim() != 3 or t["spectrum"].shape[0] != 3 or t["spectrum"].shape[2] != t["spectrum"].shape[1] // 2 + 1:
        raise InputError(f"photo statistics {path.name[:80]} has tensors of the wrong shape")
    return PhotoStats(t["mean"], t["colour"], t["spectrum"])


def register_cli(ap: argparse.ArgumentParser):
    """``python -m dgncore photo-stats --images DIR [--out FILE]``: statistics of a photo
    folder's training part (the fixed held-out tenth is left out, as for a decoder)."""
    ap.description = "statistics of real photos (colour, amplitude spectrum) for the natural method"
    ap.add_argument("--images", required=True, metavar="DIR", help="folder of photos (searched recursively)")
    ap.add_argument("--out", default=str(DEFAULT_STATS), help="statistics file to write (.safetensors)")
    ap.add_argument("--size", type=int, default=STATS_SIZE)
    ap.add_argument("--holdout", action=argparse.BooleanOptionalAction, default=True, help="leave the held-out tenth out")
    return run_cli


def run_cli(args: argparse.Namespace) -> int:
    from dgncore.data import holdout_split, image_files

    if not 16 <= args.size <= 1024:
        raise InputError("--size must be between 16 and 1024")
    root = Path(args.images)
    files = image_files(root)
    train, held = holdout_split(files) if args.holdout else (files, [])
    stats = compute_photo_stats(train, args.size)
    argv = getattr(sys, "orig_argv", sys.argv)
    meta = {"format": "dgn-photo-stats/1", "folder": root.name, "photos": len(train), "size": args.size,
            "heldout": [f.relative_to(root).as_posix() for f in held], "command": shlex.join(["python", *argv[1:]])}
    save_photo_stats(stats, args.out, meta)
    print(f"wrote {args.out} ({len(train)} photos, {len(held)} held out)")
    return 0


__all__ = ["PhotoStats", "compute_photo_stats", "save_photo_stats", "load_photo_stats", "DEFAULT_STATS"]
