"""Gallery: browse every saved result, and the ready-made examples, without computing anything."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from dashboard import cards, page, runner, showcase, state, words
from dashboard.records import attach_files

PAGE = "gallery"
PAGE_SIZE = 24
MADE = "made here"
EXAMPLES = "ready-made examples"

st.title("Gallery")
page.intro(
    "Every picture made here or with the command line is kept with its scores, and the app ships a set of ready-made "
    "examples. Browse them without computing anything: search by class, filter by method, and open one to see what "
    "the classifier sees in it, how it got there, and all its settings."
)
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
    from dgncore.result_files import scan_results

    recs = scan_results(Path(folder))
    return [attach_files(r, (Path(folder) / r["path"]).parent) for r in recs]


if not root.is_dir() and root != runner.results_root().expanduser():
    page.error(f"the folder {str(root)[:200]} does not exist")
    st.stop()
made = scan(str(root), fingerprint(root)) if root.is_dir() else []
examples = [dict(r, path=runner.gallery_key(r)) for r in showcase.example_records()]
records = made + examples
if not records:
    st.info(f"No pictures in {root} yet. Make some on the other pages, or with `python -m dgncore generate --out {root}`.")
    st.stop()

sources = [s for s, recs in ((MADE, made), (EXAMPLES, examples)) if recs]
methods = sorted({r.get("method") or "?" for r in records})
models = sorted({r.get("model") or "?" for r in records})
c1, c2, c3, c4, *c5 = st.columns([2, 1, 1, 1, 1] if len(models) > 1 else [2, 1, 1, 1])
with c1:
    query = state.widget(st.text_input, "Search", f"{PAGE}.q", "", "q", placeholder="class name, layer ...")
with c2:
    pick_sources = state.widget(st.multiselect, "Show", f"{PAGE}.from", [], "from", options=sources, placeholder="everything")
with c3:
    pick_methods = state.widget(st.multiselect, "Method", f"{PAGE}.methods", [], "methods", options=methods, placeholder="all",
                                format_func=words.method_label)
pick_models: list[str] = []
if c5:
    with c5[0]:
        pick_models = state.widget(st.multiselect, "Model", f"{PAGE}.models", [], "models", options=models, placeholder="all")
with c4:
    order = state.widget(st.selectbox, "Sort by", f"{PAGE}.sort", "newest", "sort", options=["newest", "most like a real photo", "name"],
                         help="Newest: your own pictures, newest first, then the examples most like a real photo. "
                              "Most like a real photo: nearest to a real photo of its class in a second network's eyes.")

q = query.strip().lower()
shown = [
    r for r in records
    if (not q or q in (r.get("target_label") or "").lower() or q in (r.get("target") or "").lower())
    and (not pick_sources or (EXAMPLES if r.get("example") else MADE) in pick_sources)
    and (not pick_methods or (r.get("method") or "?") in pick_methods)
    and (not pick_models or (r.get("model") or "?") in pick_models)
]
if order == "newest":
    shown.sort(key=showcase.likeness)
    shown.sort(key=lambda r: "" if r.get("example") else r.get("created") or "", reverse=True)  # stable: examples keep their order
elif order == "most like a real photo":
    shown.sort(key=showcase.likeness)
else:
    shown.sort(key=lambda r: (r.get("target_label") or "").lower())

opened = st.query_params.get("open")
if opened:
    match = [r for r in records if r["path"] == opened]
    if match:
        rec = match[0]
        with st.container(border=True):
            head, close = st.columns([6, 1])
            head.subheader(words.md(rec.get("target_label") or rec["target"]), anchor=False)
            if close.button("Close", key=f"{PAGE}.close"):
                del st.query_params["open"]
                st.rerun()
            cards.details(rec, f"{PAGE}.detail")
    else:
        page.error(f"no result {opened[:120]!r} in this folder")

pages = max(1, -(-len(shown) // PAGE_SIZE))
where = "" if lim.hosted else f" · made here: {root}"
st.caption(f"{len(shown)} of {words.plural(len(records), 'picture')} ({len(examples)} ready-made examples){where}")
kept = st.session_state.setdefault(state.KEPT, {})
for store in (st.session_state, kept):  # fewer pages than before (a narrower search): clamp
    if store.get(f"{PAGE}.page", 1) > pages:
        store[f"{PAGE}.page"] = pages
page_no = 1
if pages > 1:
    page_no = state.widget(st.number_input, f"Page (of {pages})", f"{PAGE}.page", 1, "page", min_value=1, max_value=pages, step=1, width=200)


def open_result(rec: dict) -> None:
    st.query_params["open"] = rec["path"]
    st.rerun()


cards.image_grid(shown[(page_no - 1) * PAGE_SIZE : page_no * PAGE_SIZE], PAGE, columns=6, on_open=open_result, caption_of=cards.short_caption)
