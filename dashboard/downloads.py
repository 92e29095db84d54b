"""Downloads of results: every picture of a view, with its JSON (and GIF), in one ZIP."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Sequence

import streamlit as st

from dashboard import runner, words


def zip_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    """Picture + JSON (+ GIF) of every record, in one ZIP."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rec in records:
            image = Path(rec["_file"])
            folder = f"{runner.safe_name(rec.get('method', 'run'))}-seed{rec.get('seed', 0)}"
            for f in (image, image.with_suffix(".json"), Path(rec.get("_gif") or image.with_suffix(".gif"))):
                arc = f"{folder}/{f.name}"
                if f.is_file() and arc not in seen:
                    seen.add(arc)
                    zf.write(f, arc)
    return buf.getvalue()


def zip_button(records: Sequence[dict[str, Any]], key: str, name: str = "dgn-results.zip") -> None:
    if records:
        st.download_button(f"Download all as ZIP ({words.plural(len(records), 'picture')}, with their settings and scores)",
                           lambda: zip_bytes(records), file_name=name, mime="application/zip", key=f"{key}.zip_all", on_click="ignore",
                           icon=":material/folder_zip:")
