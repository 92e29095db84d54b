"""See a class: the picture the classifier finds most typical of one class."""

from __future__ import annotations

import streamlit as st

from dashboard import cards, controls, downloads, flow, page, runner, words
from dashboard.runner import Request

PAGE = "single"

st.title("See a class")
page.intro(
    "Pick a class and press Generate: DGN Explorer paints the picture this classifier finds most typical of it. "
    "The classifier never changes; the picture does, step by step, until the classifier is sure. "
    "Every score is measured again on the saved picture, and a second network gives its opinion: "
    "a high score alone can be fooled by noise (try the Raw pixels method under Advanced)."
)
choice, clf = page.need_model()

idx = controls.class_picker(clf, f"{PAGE}.class")
opts = controls.advanced(PAGE, compare=True, samples=True)
methods = [opts["method"]] + ([opts["compare"]] if opts["compare"] not in (controls.NONE, opts["method"]) else [])
seeds = tuple(range(int(opts["seed"]), int(opts["seed"]) + int(opts["samples"])))
name = clf.classes[idx]
requests = [
    Request(choice.spec, (f"class:{idx}",), m, controls.steps_for(m, opts), seeds, controls.size_arg(int(opts["size"]), m),
            choice.weights, choice.name, label=f"{name} · {words.method_label(m)}", target_labels=(name,))
    for m in methods
]
results = flow.generate_panel(PAGE, requests, ready=all(runner.method_ready(m) for m in methods))

if results:
    if len(results) == 1 and len(results[0]) == 1:
        cards.result_card(results[0][0], f"{PAGE}.0.0", curve=True, wide=True)
    elif len(results) == 1:
        cards.card_grid(results[0], f"{PAGE}.0", columns=4)
    else:
        cols = st.columns(len(results))
        for j, (req, recs) in enumerate(zip(requests, results)):
            with cols[j]:
                st.subheader(words.method_label(req.method), anchor=False)
                cards.card_grid(recs, f"{PAGE}.{j}", columns=2 if len(recs) > 1 else 1, curve=len(recs) == 1)
    downloads.zip_button([r for recs in results for r in recs], PAGE, name=f"dgn-{runner.safe_name(name)}.zip")
