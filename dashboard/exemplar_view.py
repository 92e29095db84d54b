"""Real images beside generated ones: a folder's images ranked for a class or a filter
(:mod:`dgncore.audit.exemplars`), shown as strips of thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import streamlit as st

from dashboard import page, words
from dgncore.errors import InputError


def exemplar_index(clf, root: Path, layers: Sequence[str] = ()):
    """:func:`dgncore.audit.exemplars.build_index` of ``root`` (cached on disk by that module, so
    only the first look at a folder reads its images), with a progress bar meanwhile;
    None after an error line."""
    from dgncore.audit.exemplars import build_index

    bar = st.empty()

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Reading the folder's images to rank them: {done}/{total}")

    try:
        with st.spinner("Looking through the folder's images ..."):
            return build_index(clf, root, layers=layers, skip_unreadable=True, progress=progress)
    except InputError as e:
        page.error(e)
        return None
    finally:
        bar.empty()


@st.cache_data(show_spinner=False, max_entries=512)
def thumbnail(path: str, mtime: float, side: int = 160):
    """A small copy of an image file (user folders may hold large photos)."""
    import numpy as np

    from dgncore.data import open_image

    im = open_image(path)
    im.thumbnail((side, side))
    return np.asarray(im)


def exemplar_strip(title: str, items: Sequence[Any], width: int = 88) -> None:
    """Real images of a folder in a row, each with its sub-folder and score for the target.
    ``title`` is markdown: escape user names in it with :func:`dashboard.words.md`."""
    st.markdown(title)
    if not items:
        st.caption("No images.")
        return
    st.image([thumbnail(str(e.path), e.path.stat().st_mtime) for e in items],
             caption=[words.md(f"{words.short(e.label or '(top folder)', 14)} · {e.value:.2f}") for e in items], width=width)


def exemplars_of(index, target: str, name: str, k: int = 4, score: str = "the classifier's raw score") -> None:
    """The ``k`` images of ``index`` that score highest and lowest for ``target``."""
    try:
        top, bottom = index.extremes(target, k)
    except InputError as e:
        page.error(e)
        return
    exemplar_strip(f"Real images that score highest for **{words.md(name)}** ({score} under each)", top)
    exemplar_strip("… and lowest", bottom)
