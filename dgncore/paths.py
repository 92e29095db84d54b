"""Where DGN Explorer keeps things on disk: the files it ships, its cache, the sample photos.

One place, so that ``$DGN_CACHE`` moves every cache at once and a module that moves
within the package does not lose its assets.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the files that ship inside the package (decoder, photo statistics)
ASSETS = Path(__file__).resolve().parent / "assets"
#: the decoder the pretrained method draws with, and the photo statistics of the natural method
DEFAULT_DECODER = ASSETS / "decoder.safetensors"
DEFAULT_STATS = ASSETS / "photo_stats.safetensors"
SHIPPED_BANK = ASSETS / "photo_bank.safetensors"
#: the environment variable that moves the cache (default ``~/.cache/dgn-explorer``)
CACHE_ENV = "DGN_CACHE"
#: the ImageNet sample photos beside a checkout (``../shared/imagenet-samples``); never shipped
DEFAULT_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "imagenet-samples"


def cache_dir(part: str) -> Path:
    """The cache folder for one kind of thing (``exemplars``, ``priors``, ...), not created."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "dgn-explorer") / part
