"""Compound: one image that several classes should all recognise (the paper's Fig. 9)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from dashboard import runner, state, widgets
from dashboard.runner import Request
from dgncore.errors import InputError

st.title("Compound")
widgets.explain(
    "Ask for two or more classes at once, each with a weight, and see one image that tries to be all of them, "
    "beside the image of each class alone. The chart compares how strongly the classifier sees each class in each picture, "
    "measured on the saved files. A heavier weight pulls the mix toward that class."
)
choice, clf = widgets.need_model()
PAGE = "compound"
DEFAULTS = ["ostrich", "bullfrog", "volcano", "goldfinch"]

count = state.widget(st.number_input, "How many classes", f"{PAGE}.k", 2, "k", min_value=2, max_value=4, step=1, width=200)
units: list[int] = []
parts: list[str] = []
bad = False
cols = st.columns(int(count))
for i in range(int(count)):
    with cols[i]:
        default = DEFAULTS[i] if DEFAULTS[i] in clf.classes else clf.classes[min(i, len(clf.classes) - 1)]
        text = state.widget(st.text_input, f"Class {i + 1}", f"{PAGE}.c{i + 1}", default, f"c{i + 1}")
        weight = state.widget(st.number_input, f"Weight {i + 1}", f"{PAGE}.w{i + 1}", 1.0, f"w{i + 1}", min_value=0.1, max_value=10.0, step=0.1)
        try:
            idx = clf.class_index(text)
            st.caption(f"→ {idx}: {clf.descriptions[idx][:60]}")
            units.append(idx)
            parts.append(f"{idx}*{weight:g}")
        except InputError as e:
            widgets.error(e)
            bad = True
if not bad and len(set(units)) != len(units):
    widgets.error("the same class appears twice: choose different classes")
    bad = True
singles = st.checkbox("Also make each class alone, for comparison", value=True, key=f"{PAGE}.singles")
opts = widgets.method_controls(PAGE)

requests: list[Request] = []
if not bad:
    texts = ("classes:" + "+".join(parts),) + (tuple(f"class:{u}" for u in units) if singles else ())
    label = " + ".join(clf.classes[u] for u in units)
    requests = [Request(choice.spec, texts, opts["method"], int(opts["steps"]), (int(opts["seed"]),),
                        widgets.size_arg(int(opts["size"]), opts["method"]), choice.weights, choice.name, label=label,
                        target_labels=(label,) + tuple(clf.classes[u] for u in units))]

go_ = st.button("Generate", type="primary", disabled=bad or widgets.running(PAGE))
results = widgets.run_panel(PAGE, requests, go_) if requests else None
if results is None and requests and not widgets.running(PAGE):
    r = requests[0]
    try:
        saved = runner.find_saved(r.model_spec, r.target_texts, r.method, r.steps, r.seeds, r.size, weights=r.weights, model_name=r.model_name)
    except InputError as e:
        widgets.error(e)
        saved = None
    if saved is not None:
        results = [saved]
        st.caption("These exact settings were run before: the results below come from disk.")


@st.cache_data(show_spinner=False, max_entries=256)
def class_probs(path: str, mtime: float, model: str, spec: str, _clf) -> dict[str, float]:
    """p of each chosen class on the saved PNG (dgncore's scorer, on the file as saved)."""
    from dgncore.data import load_image
    from dgncore.objectives import parse_target
    from dgncore.results import score_image

    out = score_image(_clf, load_image(path), parse_target(spec, _clf))
    return out.get("p_classes") or {_clf.classes[int(spec.split(":")[1].split("*")[0])]: out["p_target"]}


if results:
    recs = results[0]
    names = [clf.classes[u] for u in units]
    spec_all = "classes:" + "+".join(str(u) for u in units)
    cols = st.columns(len(recs))
    for j, rec in enumerate(recs):
        with cols[j]:
            st.subheader("all together" if j == 0 else f"{names[j - 1]} alone")
            widgets.result_card(rec, f"{PAGE}.{j}", chart=False)
    fig = go.Figure()
    labels = ["all together"] + [f"{n} alone" for n in names][: len(recs) - 1]
    probs = [class_probs(rec["_file"], Path(rec["_file"]).stat().st_mtime, choice.name, spec_all, clf) for rec in recs]
    for i, n in enumerate(names):
        fig.add_trace(go.Bar(name=f"p({n})", marker_color=widgets.PALETTE[i % len(widgets.PALETTE)], x=labels, y=[p.get(n, 0.0) for p in probs], text=[f"{p.get(n, 0.0):.2f}" for p in probs], textposition="auto"))
    fig.update_layout(barmode="group", height=300, yaxis=dict(range=[0, 1], title="probability"), margin=dict(l=10, r=10, t=30, b=10),
                      title=dict(text="each class's probability in each image (saved PNGs)", font=dict(size=13)))
    st.plotly_chart(fig, key=f"{PAGE}.probs", width="stretch")
    widgets.zip_button(recs, PAGE, name="dgn-compound.zip")
