"""Gallery: browse every saved result (and galleries made by ``python -m dgncore gallery``)."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from dashboard import runner, state, widgets

st.title("Gallery")
widgets.explain(
    "Every picture made here or with the command line is kept on disk with its scores. Browse them without computing "
    "anything: search by class or target, filter by method and model, and open one to see its scores, how it rose "
    "during the optimisation, and all its settings."
)
PAGE = "gallery"
PAGE_SIZE = 24
lim = state.limits()
default_root = str(runner.results_root())
if lim.hosted:
    root_text = default_root
else:
    root_text = state.widget(st.text_input, "Results folder", f"{PAGE}.root", default_root, "root",
                             help="The dashboard's results folder, or any folder written by `python -m dgncore generate` or `gallery`.")
root = Path(root_text.strip() or default_root).expanduser()


def fingerprint(folder: Path) -> tuple[int, float]:
    """(count, newest mtime) of the JSON files: cheap, and changes whenever a result is added."""
    n, newest = 0, 0.0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            if f.endswith(".json"):
                n += 1
                try:
                    newest = max(newest, os.stat(os.path.join(dirpath, f)).st_mtime)
                except OSError:
                    pass
    return n, newest


@st.cache_data(show_spinner="Reading results ...", max_entries=8)
def scan(folder: str, fp: tuple[int, float]) -> list[dict]:
    from dgncore.results import scan_results

    recs = scan_results(Path(folder))
    for r in recs:
        r["_file"] = str((Path(folder) / r["path"]).parent / r["png"])
        gif = Path(r["_file"]).with_suffix(".gif")
        if gif.is_file():
            r["_gif"] = str(gif)
    return recs


NO_RESULTS = "No results in {root} yet. Make some on the other pages, or with `python -m dgncore generate --out {root}`."
if not root.is_dir():
    if root == runner.results_root().expanduser():
        st.info(NO_RESULTS.format(root=root))
    else:
        widgets.error(f"the folder {str(root)[:200]} does not exist")
    st.stop()
records = scan(str(root), fingerprint(root))
if not records:
    st.info(NO_RESULTS.format(root=root))
    st.stop()

methods = sorted({r.get("method") or "?" for r in records})
models = sorted({r.get("model") or "?" for r in records})
kinds = sorted({r.get("target_kind") or "?" for r in records})
c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
with c1:
    query = state.widget(st.text_input, "Search", f"{PAGE}.q", "", "q", placeholder="class name, layer, target ...")
with c2:
    pick_methods = state.widget(st.multiselect, "Method", f"{PAGE}.methods", [], "methods", options=methods, placeholder="all")
with c3:
    pick_models = state.widget(st.multiselect, "Model", f"{PAGE}.models", [], "models", options=models, placeholder="all")
with c4:
    order = state.widget(st.selectbox, "Sort by", f"{PAGE}.sort", "newest", "sort", options=["newest", "highest probability", "name"])

q = query.strip().lower()
shown = [
    r for r in records
    if (not q or q in (r.get("target_label") or "").lower() or q in (r.get("target") or "").lower())
    and (not pick_methods or (r.get("method") or "?") in pick_methods)
    and (not pick_models or (r.get("model") or "?") in pick_models)
]
if order == "newest":
    shown.sort(key=lambda r: r.get("created") or "", reverse=True)
elif order == "highest probability":
    shown.sort(key=lambda r: -(r.get("p_target") if r.get("p_target") is not None else -1))
else:
    shown.sort(key=lambda r: (r.get("target_label") or "").lower())

opened = st.query_params.get("open")
if opened:
    match = [r for r in records if r["path"] == opened]
    if match:
        rec = match[0]
        with st.container(border=True):
            head, close = st.columns([6, 1])
            head.subheader(rec.get("target_label") or rec["target"])
            if close.button("Close", key=f"{PAGE}.close"):
                del st.query_params["open"]
                st.rerun()
            a, b = st.columns([2, 3])
            with a:
                widgets.result_card(rec, f"{PAGE}.detail", chart=False)
            with b:
                widgets.top5_chart(rec, f"{PAGE}.detail.top5")
                widgets.record_curve(rec, f"{PAGE}.detail.curve")
            widgets.metadata(rec)
    else:
        widgets.error(f"no result {opened[:120]!r} in this folder")

pages = max(1, -(-len(shown) // PAGE_SIZE))
st.caption(f"{len(shown)} of {len(records)} results in {root}")
kept = st.session_state.setdefault(state.KEPT, {})
for store in (st.session_state, kept):  # fewer pages than before (a narrower search): clamp
    if store.get(f"{PAGE}.page", 1) > pages:
        store[f"{PAGE}.page"] = pages
page = 1
if pages > 1:
    page = state.widget(st.number_input, f"Page (of {pages})", f"{PAGE}.page", 1, "page", min_value=1, max_value=pages, step=1, width=200)


def open_result(rec: dict) -> None:
    st.query_params["open"] = rec["path"]
    st.rerun()


widgets.image_grid(shown[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], PAGE, columns=6, on_open=open_result, caption=widgets.short_caption)
