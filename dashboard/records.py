"""A saved result as the pages use it: its record with ``_file`` (the picture) and, where
the optimisation was kept, ``_gif`` (the animated GIF beside it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def attach_files(rec: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """``rec`` with the absolute paths of its picture and GIF in ``folder`` (the folder of its JSON)."""
    picture = (Path(folder) / rec["png"]).resolve()
    rec["_file"] = str(picture)
    gif = picture.with_suffix(".gif")
    if gif.is_file():
        rec["_gif"] = str(gif)
    return rec
