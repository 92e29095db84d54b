"""Single class: the image the classifier finds most typical of one class."""

from __future__ import annotations

import streamlit as st

from dashboard import runner, state, widgets
from dashboard.runner import Request
from dgncore.errors import InputError

st.title("Single class")
widgets.explain(
    "Pick a class, and DGN Explorer paints the picture this classifier finds most typical of it. "
    "The classifier itself never changes: a generator network learns to make an image that raises the class's score, "
    "step by step. Every score shown is measured again on the saved PNG, so it is what you download. "
    "A high score alone does not mean the picture looks real to us: noise can fool a network too (try the pixel method)."
)
choice, clf = widgets.need_model()
PAGE = "single"

left, right = st.columns([2, 3])
with left:
    default_class = "tench" if "tench" in clf.classes else clf.classes[0]
    text = state.widget(st.text_input, "Class (name or number)", f"{PAGE}.class", default_class, "class",
                        help="A class name, a part of it that is unique, or its index.")
    idx = None
    try:
        idx = clf.class_index(text)
        st.caption(f"→ class {idx}: {clf.descriptions[idx]}")
    except InputError as e:
        widgets.error(e)
with right:
    with st.expander("Find a class by name"):
        query = st.text_input("Search", key=f"{PAGE}.search", placeholder="shark, dog, guitar ...")
        if query.strip():
            hits = [(i, d) for i, d in enumerate(clf.descriptions) if query.strip().lower() in d.lower()][:50]
            if hits:
                st.dataframe({"index": [i for i, _ in hits], "class": [d for _, d in hits]}, hide_index=True, height=200)
            else:
                st.caption("No class contains that text.")

opts = widgets.method_controls(PAGE, compare=True, samples=True)
methods = [opts["method"]] + ([opts["compare"]] if opts["compare"] not in ("none", opts["method"]) else [])
seeds = tuple(range(int(opts["seed"]), int(opts["seed"]) + int(opts["samples"])))
requests = [
    Request(choice.spec, (f"class:{idx}",), m, int(opts["steps"]), seeds, widgets.size_arg(int(opts["size"]), m),
            choice.weights, choice.name, label=f"{clf.classes[idx]} · {m}", target_labels=(clf.classes[idx],))
    for m in methods
] if idx is not None else []

go = st.button("Generate", type="primary", disabled=idx is None or widgets.running(PAGE))
results = widgets.run_panel(PAGE, requests, go) if requests else None
if results is None and requests and not widgets.running(PAGE):
    try:
        saved = [runner.find_saved(r.model_spec, r.target_texts, r.method, r.steps, r.seeds, r.size, weights=r.weights, model_name=r.model_name) for r in requests]
    except InputError as e:
        widgets.error(e)
        saved = []
    if saved and all(s is not None for s in saved):
        results = saved
        st.caption("These exact settings were run before: the results below come from disk.")

if results:
    if len(results) == 1 and len(results[0]) == 1:
        widgets.result_card(results[0][0], f"{PAGE}.0.0", curve=True, wide=True)
    elif len(results) == 1:
        widgets.card_grid(results[0], f"{PAGE}.0", columns=4)
    else:
        cols = st.columns(len(results))
        for j, (req, recs) in enumerate(zip(requests, results)):
            with cols[j]:
                st.subheader(req.method)
                widgets.card_grid(recs, f"{PAGE}.{j}", columns=2 if len(recs) > 1 else 1, curve=len(recs) == 1)
    widgets.zip_button([r for recs in results for r in recs], PAGE, name=f"dgn-{runner.safe_name(clf.classes[idx])}.zip")
