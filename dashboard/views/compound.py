"""Mix classes: one picture that several classes should all recognise (the paper's Fig. 9)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from dashboard import (
    cards,
    charts,
    controls,
    downloads,
    flow,
    page,
    runner,
    state,
    words,
)
from dashboard.runner import Request

PAGE = "compound"
DEFAULTS = ["ostrich", "bullfrog", "volcano", "goldfinch"]

st.title("Mix classes")
page.intro(
    "Ask for two or more classes at once and see one picture that tries to be all of them, beside the picture of each "
    "class alone. The chart compares how sure the classifier is of each class in each picture, measured on the saved files."
)
choice, clf = page.need_model()

count = state.widget(st.segmented_control, "How many classes", f"{PAGE}.k", 2, "k", options=[2, 3, 4])
count = int(count or 2)
units: list[int] = []
cols = st.columns(count)
for i in range(count):
    with cols[i]:
        default = DEFAULTS[i] if DEFAULTS[i] in clf.classes else str(min(i, clf.n_classes - 1))
        units.append(controls.class_picker(clf, f"{PAGE}.c{i + 1}", f"c{i + 1}", default, label=f"Class {i + 1}"))


def weights_and_singles() -> dict:
    st.markdown("**How strongly each class pulls** (a heavier weight pulls the mix toward that class)")
    wcols = st.columns(count)
    weights = [state.widget(wcols[i].number_input, f"Weight of class {i + 1}", f"{PAGE}.w{i + 1}", 1.0, f"w{i + 1}",
                            min_value=0.1, max_value=10.0, step=0.1) for i in range(count)]
    singles = st.checkbox("Also make each class alone, for comparison", value=True, key=f"{PAGE}.singles")
    return {"weights": weights, "singles": singles}


opts = controls.advanced(PAGE, extra=weights_and_singles)
names = [clf.classes[u] for u in units]
distinct = len(set(units)) == len(units)
if not distinct:
    page.error("the same class appears twice: choose different classes")
requests: list[Request] = []
if distinct:
    parts = [f"{u}*{w:g}" for u, w in zip(units, opts["weights"])]
    texts = ("classes:" + "+".join(parts),) + (tuple(f"class:{u}" for u in units) if opts["singles"] else ())
    label = " + ".join(names)
    requests = [Request(choice.spec, texts, opts["method"], int(opts["steps"]), (int(opts["seed"]),),
                        controls.size_arg(int(opts["size"]), opts["method"]), choice.weights, choice.name, label=label,
                        target_labels=(label,) + tuple(names))]
results = flow.generate_panel(PAGE, requests, ready=distinct and runner.method_ready(opts["method"]))


@st.cache_data(show_spinner=False, max_entries=256)
def class_probs(path: str, mtime: float, model: str, spec: str, _clf) -> dict[str, float]:
    """How sure the classifier is of each chosen class in the saved picture (dgncore's scorer, on the file)."""
    from dgncore.data import load_image
    from dgncore.drawing.objectives import parse_target
    from dgncore.models.hardware import in_passing_thread
    from dgncore.results import score_image

    out = in_passing_thread(score_image, _clf, load_image(path), parse_target(spec, _clf))  # not on the script thread (runner.load says why)
    return out.get("p_classes") or {_clf.classes[int(spec.split(":")[1].split("*")[0])]: out["p_target"]}


if results:
    recs = results[0]
    spec_all = "classes:" + "+".join(str(u) for u in units)
    cols = st.columns(len(recs))
    for j, rec in enumerate(recs):
        with cols[j]:
            st.subheader("all together" if j == 0 else f"{words.md(names[j - 1])} alone", anchor=False)
            cards.result_card(rec, f"{PAGE}.{j}", chart=False)
    fig = go.Figure()
    labels = ["all together"] + [f"{n} alone" for n in names][: len(recs) - 1]
    probs = [class_probs(rec["_file"], Path(rec["_file"]).stat().st_mtime, choice.name, spec_all, clf) for rec in recs]
    colours = charts.palette()
    for i, n in enumerate(names):
        fig.add_trace(go.Bar(name=n, x=labels, y=[p.get(n, 0.0) for p in probs], marker_color=colours[i % len(colours)],
                             text=[words.percent(p.get(n, 0.0)) for p in probs], textposition="auto"))
    fig.update_layout(barmode="group", height=300, yaxis=dict(range=[0, 1], title="how sure", tickformat=".0%"),
                      margin=dict(l=10, r=10, t=30, b=10), title=dict(text="how sure the classifier is of each class, in each saved picture",
                                                                      font=dict(size=13)))
    st.plotly_chart(fig, key=f"{PAGE}.probs", width="stretch")
    downloads.zip_button(recs, PAGE, name="dgn-compound.zip")
