"""Pieces several pages share: the method controls, the progress view (live image and a
plotly curve), result cards with their top-5 chart, image grids, and downloads."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import plotly.graph_objects as go
import streamlit as st

from dashboard import runner, state
from dashboard.runner import BackgroundRun, Request
from dgncore.errors import InputError
from dgncore.presets import get_preset


def _starts_help() -> str:
    """How the pretrained preset starts, from the preset itself (so the text cannot go stale)."""
    p = get_preset("pretrained")
    if p.restarts == 1:
        return "it starts from the decoder's average code, shifted at random by the seed"
    race = f" and after {p.prune_after} steps only the best-scoring one goes on" if p.prune_after else ""
    return f"{p.restarts} starts run together{race}"


METHOD_HELP = {
    "pretrained": "pretrained G: only the first layer of a generator trained as an image decoder changes (the paper's best pictures); "
                  + _starts_help(),
    "untrained": "untrained G: a whole generator network from random weights is trained for this one image",
    "pixel": "pixels: the image itself is changed (the paper's Fig. 1 baseline, usually noise)",
    "fourier": "Fourier: a Lucid-style baseline in a colour-decorrelated frequency space",
}
METHODS = list(METHOD_HELP)
SIZES = [32, 64, 96, 128, 160, 224, 256, 320, 384, 512]
DEFAULT_SIZE = 224
RUNS = "_dgn_runs"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
POLL_S = 0.25


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def explain(text: str) -> None:
    """A short plain-words note on what the page shows."""
    st.markdown(f"<div style='color:#555;font-size:0.95rem;margin-bottom:0.6rem'>{text}</div>", unsafe_allow_html=True)


#: dgncore's messages point to the CLI; here the same list is on the page
_CLI_HINTS = {
    "search the list with: python -m dgncore classes": "search for it under \"Find a class by name\"",
    "list them with: python -m dgncore layers": "see the list of all layers on the Layer hierarchy page",
}


def error(e: BaseException | str) -> None:
    """One line, no traceback."""
    text = state.one_line(e) if isinstance(e, BaseException) else str(e)
    for cli, here in _CLI_HINTS.items():
        text = text.replace(cli, here)
    st.error(text)


def need_model():
    """The classifier chosen in the sidebar, or stop the page with a note."""
    choice, clf = state.current()
    if clf is None:
        st.info("Choose a model that loads in the sidebar to use this page.")
        st.stop()
    return choice, clf


# --------------------------------------------------------------------------- controls


def method_controls(page: str, compare: bool = False, samples: bool = False) -> dict[str, Any]:
    """Method, steps, image size, seed (and number of samples, a second method)."""
    lim = state.limits()
    sizes = [s for s in SIZES if s <= lim.max_size]
    default_size = DEFAULT_SIZE if DEFAULT_SIZE in sizes else sizes[-1]
    cols = st.columns(5 if samples else 4)
    out: dict[str, Any] = {}
    with cols[0]:
        out["method"] = state.widget(st.selectbox, "Method", f"{page}.method", runner.default_method(), "method",
                                     options=METHODS, format_func=lambda m: m, help="\n\n".join(f"**{k}**: {v}" for k, v in METHOD_HELP.items()))
    with cols[1]:
        out["steps"] = state.widget(st.number_input, "Steps", f"{page}.steps", min(200, lim.max_steps), "steps",
                                    min_value=1, max_value=lim.max_steps, step=10, help="Optimisation steps (a run stops early once the target reaches p = 0.99).")
    with cols[2]:
        out["size"] = state.widget(st.selectbox, "Image size (px)", f"{page}.size", default_size, "size", options=sizes,
                                   help="Side of the generated image; smaller is faster. The classifier sees it resized to its own input size.")
    with cols[3]:
        out["seed"] = state.widget(st.number_input, "Seed", f"{page}.seed", 0, "seed", min_value=0, max_value=2**31 - 1, step=1,
                                   help="The random start; the same seed and settings give the same image (and are served from disk).")
    if samples:
        with cols[4]:
            out["samples"] = state.widget(st.number_input, "Samples", f"{page}.n", 1, "n", min_value=1, max_value=8, step=1,
                                          help="How many images (seeds seed, seed+1, ...).")
    if compare:
        out["compare"] = state.widget(st.selectbox, "Compare with a second method (side by side)", f"{page}.compare", "none", "compare",
                                      options=["none"] + METHODS)
    st.caption(METHOD_HELP.get(out["method"], ""))
    return out


def size_arg(size: int | None, method: str) -> int | None:
    """None when the size is the preset's default (keeps folder names short)."""
    from dgncore.presets import get_preset

    try:
        return None if size == get_preset(method).generator.out_size else size
    except InputError:
        return size


# --------------------------------------------------------------------------- running


def run_panel(key: str, requests: Sequence[Request], start: bool) -> list[list[dict[str, Any]]] | None:
    """Start (when ``start``) and follow a background run of ``requests``; returns its
    records (one list per request) when it has finished for exactly these requests."""
    runs: dict[str, BackgroundRun] = st.session_state.setdefault(RUNS, {})
    run = runs.get(key)
    if start:
        if run is not None and not run.done:
            st.warning("A run is still going; stop it first.")
        else:
            run = runs[key] = runner.start_background(requests)
    if run is None:
        return None
    if not run.done:
        stop_box = st.empty()
        if stop_box.button("Stop generating", key=f"{key}.stop", type="secondary", help="Stop the run; what it has made so far is saved."):
            run.stop()
        follow(run, key)
        stop_box.empty()
        st.rerun()  # redraw the page as it is now: Generate enabled again, the results below
    if run.error:
        st.error(run.error)
        return None
    if run.bug:
        st.error(f"Something went wrong inside DGN Explorer ({run.bug}); the details are in the server log.")
        return None
    if run.keys() != [r.key() for r in requests]:
        return None
    if run.cancelled:
        st.warning("Stopped. The images below are where the run was when you stopped it; they are saved and marked as stopped.")
    return run.records


def running(key: str) -> bool:
    run = st.session_state.get(RUNS, {}).get(key)
    return run is not None and not run.done


def follow(run: BackgroundRun, key: str) -> None:
    """Redraw the progress of ``run`` until it ends (the page's script waits here)."""
    box = st.empty()
    seen = -1
    draws = 0
    while True:
        done = run.done
        if run.updates != seen or done:
            seen = run.updates
            draws += 1
            with box.container():
                draw_progress(run, f"{key}.{draws}")
        if done:
            break
        time.sleep(POLL_S)
    box.empty()


def draw_progress(run: BackgroundRun, key: str) -> None:
    req = run.requests[min(run.current, len(run.requests) - 1)]
    rp = run.latest
    what = req.label or req.method
    if rp is None or run.waiting:
        place = run.position
        queued = f"waiting in the queue ({'next' if place == 1 else f'{place - 1} jobs ahead'})" if place else "starting"
        st.progress(0.0, text=f"{what}: {queued} ...")
        return
    p = rp.progress
    parts = [what]
    if len(run.requests) > 1:
        parts.append(f"run {run.current + 1}/{len(run.requests)}")
    if rp.count > 1:
        parts.append(f"seed {rp.seed} ({rp.index + 1}/{rp.count})")
    parts.append(f"step {p.step}/{p.total}")
    if p.checks and p.checks[-1][1] and p.checks[-1][1][0] == p.checks[-1][1][0]:
        parts.append("p = " + ", ".join(f"{x:.2f}" for x in p.checks[-1][1][:4] if x == x))
    frac = (rp.index + p.step / max(p.total, 1)) / max(rp.count, 1)
    frac = (run.current + frac) / len(run.requests)
    st.progress(min(max(frac, 0.0), 1.0), text=" · ".join(parts))
    imgs = [_to_uint8(im) for im in p.images[:16]]
    labels = list(req.target_labels or req.target_texts)
    captions = [_short(t, 22) for t in labels[: len(imgs)]]
    figure = curve_figure(p.activation, p.checks, labels, height=240)
    if len(imgs) == 1:
        left, right = st.columns([2, 3])
        left.image(imgs, width=256, caption=captions)
        with right:
            st.plotly_chart(figure, key=f"curve.{key}", width="stretch")
    else:
        st.image(imgs, width=128 if len(imgs) <= 6 else 96, caption=captions)
        st.plotly_chart(figure, key=f"curve.{key}", width="stretch")


def _to_uint8(image):
    from dgncore.data import to_uint8

    return to_uint8(image)


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def curve_figure(activation: Sequence[Sequence[float]], checks: Sequence[Sequence[Any]], labels: Sequence[str] = (), height: int = 260) -> go.Figure:
    """Target activation per step (left axis) and the probability of the 8-bit image at each
    check (right axis), one colour per target."""
    fig = go.Figure()
    n = len(activation[0]) if activation else 0
    palette = PALETTE
    for i in range(min(n, 8)):
        name = _short(labels[i]) if i < len(labels) else f"target {i + 1}"
        color = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=list(range(1, len(activation) + 1)), y=[row[i] for row in activation], mode="lines",
                                 name=f"{name}: activation", line=dict(color=color), legendgroup=str(i)))
        pts = [(c[0], c[1][i]) for c in checks if i < len(c[1]) and c[1][i] == c[1][i] and c[1][i] is not None]
        if pts:
            fig.add_trace(go.Scatter(x=[a for a, _ in pts], y=[b for _, b in pts], mode="lines+markers", yaxis="y2",
                                     name=f"{name}: probability", line=dict(color=color, dash="dot"), legendgroup=str(i)))
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
        xaxis=dict(title="step", tick0=0, dtick=_nice_step(len(activation))), yaxis=dict(title="activation"),
        yaxis2=dict(title="probability", overlaying="y", side="right", range=[0, 1.02], tickmode="linear", tick0=0, dtick=0.25, showgrid=False),
        title=dict(text="how the target rises", font=dict(size=13)),
    )
    return fig


def _nice_step(n: int) -> int:
    """A whole-number tick spacing giving at most about 8 ticks over n steps."""
    for d in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if n / d <= 8:
            return d
    return 10_000


def record_curve(rec: dict[str, Any], key: str) -> None:
    hist = rec.get("history_activation") or []
    checks = [(s, [p]) for s, p in rec.get("history_checks") or []]
    if hist:
        st.plotly_chart(curve_figure([[v] for v in hist], checks, [rec.get("target_label", "")], height=220), key=key, width="stretch")


# --------------------------------------------------------------------------- results


def record_caption(rec: dict[str, Any]) -> str:
    bits = [rec.get("target_label") or rec.get("target", "")]
    if rec.get("p_target") is not None:
        bits.append(f"p = {rec['p_target']:.3f}, rank {rec.get('rank')}")
    elif rec.get("activation") is not None:
        bits.append(f"activation {rec['activation']:.2f}" + percentile_text(rec.get("percentile")))
    bits.append(f"{rec.get('method')} · seed {rec.get('seed')} · {rec.get('steps')} steps")
    if rec.get("cancelled"):
        bits.append("stopped early")
    bits.append("from disk" if rec.get("cached") else f"{rec.get('seconds', 0):.1f} s")
    return " · ".join(str(b) for b in bits)


def percentile_text(pct: float | None) -> str:
    if pct is None:
        return ""
    return " (above all random images)" if pct >= 100 else f" (above {pct:.0f}% of random images)"


def short_caption(rec: dict[str, Any]) -> str:
    """A one-line caption for thumbnails: target, score, method."""
    label = _short(rec.get("target_label") or rec.get("target", ""), 26)
    if rec.get("p_target") is not None:
        score = f"p {rec['p_target']:.2f}"
    elif rec.get("activation") is not None:
        score = f"act {rec['activation']:.1f}"
    else:
        score = ""
    return " · ".join(x for x in (label, score, rec.get("method") or "", "stopped" if rec.get("cancelled") else "") if x)


def top5_chart(rec: dict[str, Any], key: str, height: int = 200) -> None:
    """The classifier's five most likely classes for the saved image, as bars; the target in
    red, added below the five (with its rank) when it is not among them."""
    top = list(rec.get("top5") or [])
    if not top:
        return
    target = rec.get("target", "")
    units: list[str] = []
    if target.startswith("class:"):
        units = [target.split(":", 1)[1]]
    elif target.startswith("classes:"):
        units = [u.split("*")[0] for u in target.split(":", 1)[1].split("+")]
    rows = [(f"{t['name'][:22]} ({t['index']})", t["p"], str(t["index"]) in units) for t in top]
    if rec.get("target_kind") == "class" and units and units[0] not in {str(t["index"]) for t in top} and rec.get("p_target") is not None:
        rows.append((f"{(rec.get('target_label') or '')[:14]} ({units[0]}) · rank {rec.get('rank')}", rec["p_target"], True))
    rows = rows[::-1]
    fig = go.Figure(go.Bar(x=[r[1] for r in rows], y=[r[0] for r in rows], orientation="h",
                           marker_color=["#d62728" if r[2] else "#9aa7b8" for r in rows],
                           text=[f"{r[1]:.2f}" for r in rows], textposition="auto"))
    fig.update_layout(height=height + 20 * (len(rows) - 5), margin=dict(l=10, r=10, t=26, b=10), xaxis=dict(range=[0, 1], title=None),
                      title=dict(text="top-5 classes of the saved image" + (" (target in red)" if units else ""), font=dict(size=12)))
    st.plotly_chart(fig, key=key, width="stretch")


def result_card(rec: dict[str, Any], key: str, chart: bool = True, curve: bool = False, wide: bool = False) -> None:
    """One result: the saved image, its recomputed scores, top-5 bars, PNG / GIF downloads.
    ``wide``: image on the left, charts on the right (for a result shown alone)."""
    path = Path(rec["_file"])
    if not path.is_file():
        st.warning(f"{path.name} is no longer on disk")
        return
    if wide:
        left, right = st.columns([2, 3])
    else:
        left = right = st.container()
    with left:
        st.image(str(path), caption=record_caption(rec), width="stretch", output_format="PNG")
        c1, c2 = st.columns(2)
        c1.download_button("PNG", path.read_bytes(), file_name=path.name, mime="image/png", key=f"{key}.png", on_click="ignore",
                           width="stretch", icon=":material/download:")
        gif = rec.get("_gif")
        data = Path(gif).read_bytes() if gif and Path(gif).is_file() else None
        if data:
            c2.download_button("GIF", data, file_name=Path(gif).name, mime="image/gif", key=f"{key}.gif", on_click="ignore", width="stretch",
                               icon=":material/animation:", help="The optimisation as an animation (a frame every 10 steps).")
    with right:
        if chart:
            top5_chart(rec, f"{key}.top5")
        if curve:
            record_curve(rec, f"{key}.curve")
    if data:
        with left:
            with st.expander("How it got there (animation)"):
                st.image(data, caption="a frame every 10 steps, then the saved image", width="stretch")


def card_grid(records: Sequence[dict[str, Any]], key: str, columns: int = 4, **card: Any) -> None:
    """Result cards in rows of ``columns`` (fixed column count, so few images stay small)."""
    for start in range(0, len(records), columns):
        cols = st.columns(columns)
        for j, rec in enumerate(records[start : start + columns]):
            with cols[j]:
                result_card(rec, f"{key}.{start + j}", **card)


def zip_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    """PNG + JSON (+ GIF) of every record, in one ZIP."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rec in records:
            png = Path(rec["_file"])
            folder = f"{runner.safe_name(rec.get('method', 'run'))}-seed{rec.get('seed', 0)}"
            for f in (png, png.with_suffix(".json"), Path(rec.get("_gif") or png.with_suffix(".gif"))):
                arc = f"{folder}/{f.name}"
                if f.is_file() and arc not in seen:
                    seen.add(arc)
                    zf.write(f, arc)
    return buf.getvalue()


def zip_button(records: Sequence[dict[str, Any]], key: str, name: str = "dgn-results.zip") -> None:
    if records:
        st.download_button(f"Download all as ZIP ({plural(len(records), 'image')}, with JSON metadata)", zip_bytes(records), file_name=name,
                           mime="application/zip", key=f"{key}.zip", on_click="ignore")


def image_grid(records: Sequence[dict[str, Any]], key: str, columns: int = 4, caption: Callable[[dict[str, Any]], str] | None = None,
               on_open: Callable[[dict[str, Any]], None] | None = None, open_label: str = "Open") -> None:
    """Thumbnails in rows of ``columns``; an Open button under each when ``on_open`` is given."""
    caption = caption or record_caption
    for start in range(0, len(records), columns):
        cols = st.columns(columns)
        for j, rec in enumerate(records[start : start + columns]):
            with cols[j]:
                path = Path(rec["_file"])
                if path.is_file():
                    st.image(str(path), caption=caption(rec), width="stretch", output_format="PNG")
                else:
                    st.caption(f"{path.name}: missing")
                if on_open is not None and st.button(open_label, key=f"{key}.open.{start + j}", width="stretch"):
                    on_open(rec)


@st.dialog("Result", width="large")
def open_dialog(rec: dict[str, Any]) -> None:
    """A result larger, with its scores and metadata."""
    left, right = st.columns([3, 2])
    with left:
        st.image(rec["_file"], caption=record_caption(rec), width="stretch", output_format="PNG")
    with right:
        top5_chart(rec, "dialog.top5")
        record_curve(rec, "dialog.curve")
    metadata(rec)


def metadata(rec: dict[str, Any]) -> None:
    """Every setting and score of a result (its JSON, without the long histories)."""
    st.caption("All settings and scores of this result (its JSON file):")
    st.json({k: v for k, v in rec.items() if not k.startswith("_") and k not in ("history_activation", "history_checks")}, expanded=False)


# --------------------------------------------------------------------------- dataset exemplars


def exemplar_index(clf, root: Path, layers: Sequence[str] = ()):
    """:func:`dgncore.exemplars.build_index` of ``root`` (cached on disk by that module, so
    only the first look at a folder reads its images), with a progress bar meanwhile;
    None after an error line."""
    from dgncore.exemplars import build_index

    bar = st.empty()

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Reading the folder's images to rank them: {done}/{total}")

    try:
        with st.spinner("Looking through the folder's images ..."):
            return build_index(clf, root, layers=layers, skip_unreadable=True, progress=progress)
    except InputError as e:
        error(e)
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
    """Real images of a folder in a row, each with its sub-folder and score for the target."""
    st.markdown(f"<div style='font-size:0.9rem;margin-top:0.3rem'>{title}</div>", unsafe_allow_html=True)
    if not items:
        st.caption("No images.")
        return
    st.image([thumbnail(str(e.path), e.path.stat().st_mtime) for e in items],
             caption=[f"{_short(e.label or '(top folder)', 14)} · {e.value:.2f}" for e in items], width=width)


def exemplars_of(index, target: str, name: str, k: int = 4, score: str = "logit") -> None:
    """The ``k`` images of ``index`` that score highest and lowest for ``target``."""
    try:
        top, bottom = index.extremes(target, k)
    except InputError as e:
        error(e)
        return
    exemplar_strip(f"Real images that score highest for <b>{name}</b> ({score} under each)", top)
    exemplar_strip("… and lowest", bottom)
