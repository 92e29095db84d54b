"""Results on the page: a card per picture (the picture, what the classifier sees in it
in plain words, the second opinion, downloads, charts), grids of thumbnails, and a
larger view in a dialog."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import streamlit as st

from dashboard import charts, words


def caption(rec: dict[str, Any]) -> str:
    """One line under a thumbnail: "99% tench, its top guess" (+ "stopped early")."""
    return words.md(words.result_sentence(rec) + (" · stopped early" if rec.get("cancelled") else ""))


def short_caption(rec: dict[str, Any]) -> str:
    """A thumbnail's caption in a gallery of many, always two lines (so the rows stay
    aligned): the target and how sure, then the method."""
    label = words.short(rec.get("target_label") or rec.get("target", ""), 20)
    score = words.percent(rec["p_target"]) if rec.get("p_target") is not None else (
        f"fires {rec['activation']:.1f}" if rec.get("activation") is not None else "")
    first = words.md(" · ".join(x for x in (label, score) if x))
    return f"{first}  \n{words.md(words.method_short(rec.get('method') or ''))}"


def verdict(rec: dict[str, Any]) -> None:
    """The classifier's view in words, and the second opinion under it."""
    st.markdown(f"**{words.md(words.result_sentence(rec))}**")
    second = words.second_opinion_sentence(rec)
    if second:
        st.markdown(words.md(second[0].upper() + second[1:]), help=words.second_opinion_help(rec))
    nearest = words.nearest_sentence(rec)
    if nearest:
        st.markdown(words.md(nearest[0].upper() + nearest[1:]), help=words.nearest_help(rec))
    st.caption(words.md(words.details_line(rec)))


def _mime(path: Path) -> str:
    return "image/webp" if path.suffix.lower() == ".webp" else "image/png"


def result_card(rec: dict[str, Any], key: str, chart: bool = True, curve: bool = False, wide: bool = False) -> None:
    """One result: the saved picture, its scores said in words, downloads; the top-5 bars
    and the curve when asked. ``wide``: picture left, charts right (a result shown alone)."""
    path = Path(rec["_file"])
    if not path.is_file():
        st.warning(f"{words.md(path.name)} is no longer on disk")
        return
    left, right = st.columns([2, 3]) if wide else (st.container(), st.container())
    gif = rec.get("_gif")
    data = Path(gif).read_bytes() if gif and Path(gif).is_file() else None
    with left:
        st.image(str(path), width="stretch")
        verdict(rec)
        c1, c2 = st.columns(2)
        c1.download_button(path.suffix[1:].upper(), path.read_bytes(), file_name=path.name, mime=_mime(path), key=f"{key}.png",
                           on_click="ignore", width="stretch", icon=":material/download:")
        if data:
            c2.download_button("GIF", data, file_name=Path(gif).name, mime="image/gif", key=f"{key}.gif", on_click="ignore", width="stretch",
                               icon=":material/animation:", help="How the picture was made, as an animation (a frame every 10 steps).")
    with right:
        if chart:
            charts.top5(rec, f"{key}.top5")
        if curve:
            charts.record_curve(rec, f"{key}.curve")
    if data:
        with left, st.expander("How it got there (animation)"):
            st.image(data, caption="a frame every 10 steps, then the saved picture", width="stretch")


def card_grid(records: Sequence[dict[str, Any]], key: str, columns: int = 4, **card: Any) -> None:
    """Result cards in rows of ``columns`` (fixed column count, so few pictures stay small)."""
    for start in range(0, len(records), columns):
        cols = st.columns(columns)
        for j, rec in enumerate(records[start : start + columns]):
            with cols[j]:
                result_card(rec, f"{key}.{start + j}", **card)


def image_grid(records: Sequence[dict[str, Any]], key: str, columns: int = 4, caption_of: Callable[[dict[str, Any]], str] | None = None,
               on_open: Callable[[dict[str, Any]], None] | None = None, open_label: str = "Open") -> None:
    """Thumbnails in rows of ``columns``; an Open button under each when ``on_open`` is given."""
    caption_of = caption_of or caption
    for start in range(0, len(records), columns):
        cols = st.columns(columns)
        for j, rec in enumerate(records[start : start + columns]):
            with cols[j]:
                path = Path(rec["_file"])
                if path.is_file():
                    st.image(str(path), caption=caption_of(rec), width="stretch")
                else:
                    st.caption(f"{words.md(path.name)}: missing")
                if on_open is not None and st.button(open_label, key=f"{key}.open.{start + j}", width="stretch"):
                    on_open(rec)


def details(rec: dict[str, Any], key: str) -> None:
    """A result at full size: picture and verdict left, charts right, then every setting."""
    left, right = st.columns([2, 3])
    with left:
        st.image(rec["_file"], width="stretch")
        verdict(rec)
    with right:
        charts.top5(rec, f"{key}.top5")
        charts.record_curve(rec, f"{key}.curve")
    metadata(rec)


@st.dialog("Result", width="large")
def open_dialog(rec: dict[str, Any]) -> None:
    """A result larger, with its scores and settings."""
    details(rec, "dialog")


def metadata(rec: dict[str, Any]) -> None:
    """Every setting and score of a result (its JSON, without the long histories)."""
    with st.expander("All settings and scores (the result's JSON file)"):
        st.json({k: v for k, v in rec.items() if not k.startswith("_") and k not in ("history_activation", "history_checks")}, expanded=False)
