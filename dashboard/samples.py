"""Where a page's real images come from: a folder on this computer or an uploaded ZIP
(an ImageFolder: one sub-folder per class), as the server's limits allow.

Both tabs of the bias-audit page pick their images here, each with its own widget keys
and URL parameters, so a link brings back either choice.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import page, runner, state
from dgncore.errors import InputError

FOLDER = "A folder on this computer"
ZIP = "Upload a ZIP"


def unwrap(root: Path) -> Path:
    """A ZIP often holds one top folder around the class folders: step into it."""
    for _ in range(3):
        subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
        files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        if len(subs) == 1 and not files and any(q.is_dir() for q in subs[0].iterdir()):
            root = subs[0]
        else:
            break
    return root


def extract_upload(data: bytes) -> Path:
    """The uploaded ZIP unpacked (checked for path escapes) under the uploads folder, by content."""
    from dgncore.data import safe_extract_zip

    dest = state.uploads_dir() / "datasets" / runner.content_hash(data)
    if not (dest.is_dir() and any(dest.iterdir())):
        safe_extract_zip(data, dest)
    return unwrap(dest)


def sources() -> list[str]:
    """The ways this server offers to bring images: no server folders for visitors, ZIPs where uploads are on."""
    lim = state.limits()
    return ([FOLDER] if not lim.hosted else []) + ([ZIP] if lim.allow_uploads else [])


def picker(key: str, source_param: str, folder_param: str, label: str = "Sample images (ImageFolder layout: one sub-folder per class)") -> Path | None:
    """The source radio and its folder box or ZIP uploader; the chosen folder, or None
    (nothing chosen yet, or an error line for a bad ZIP)."""
    options = sources()
    if not options:
        st.info("This server offers no way to add sample images.")
        return None
    src = state.widget(st.radio, label, f"{key}.source", options[0], source_param, options=options, horizontal=True)
    try:
        if src == FOLDER:
            folder = state.widget(st.text_input, "Folder", f"{key}.folder", "", folder_param, placeholder="/path/to/dataset")
            return Path(folder.strip()).expanduser() if folder.strip() else None
        up = st.file_uploader("ZIP of class folders", type=["zip"], key=f"{key}.zip")
        if up is not None:
            root = extract_upload(up.getvalue())
            st.session_state[f"{key}.zip_root"] = str(root)
            return root
        kept = st.session_state.get(f"{key}.zip_root")
        return Path(kept) if kept else None
    except InputError as e:
        page.error(e)
        return None
