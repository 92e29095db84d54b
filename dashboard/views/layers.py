"""Layer hierarchy: what single filters respond to, from shallow to deep (the paper's Fig. 8)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import runner, state, widgets
from dashboard.runner import Request
from dgncore.errors import InputError

st.title("Layer hierarchy")
widgets.explain(
    "A classifier is a stack of layers; each layer has many filters, and each filter fires for some pattern. "
    "Here each picture is made to excite one filter as much as possible. Shallow layers (top rows) usually answer to "
    "colours, edges and simple textures; deeper layers (lower rows) to parts and whole objects. "
    "Under each picture: the filter's mean activation on it, and how it compares with random images. Press a picture's button to see it larger."
)
choice, clf = widgets.need_model()
PAGE = "layers"
MAX_FILTERS = 8

layers = clf.layers()
if not layers:
    st.info("This model has no layers that can be targeted (a TorchScript model allows class targets only). Use the Single class page.")
    st.stop()
names = [l.name for l in layers]
info = {l.name: l for l in layers}
with st.expander(f"All {len(layers)} layers of {choice.name}"):
    st.dataframe({"layer": names, "kind": [l.kind for l in layers], "channels": [l.channels for l in layers],
                  "output": ["x".join(map(str, l.shape)) for l in layers]}, hide_index=True, height=260)


def default_layers() -> list[str]:
    stages = [l.name for l in layers if l.kind == "Sequential"] or names
    if len(stages) <= 3:
        return stages
    return [stages[round(i * (len(stages) - 1) / 2)] for i in range(3)]


def parse_filters(text: str) -> list[int]:
    out: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, dash, b = part.partition("-")
        if not (a.strip().isdigit() and (not dash or b.strip().isdigit())):
            raise InputError(f"cannot read filters {part[:20]!r}: write numbers and ranges like 0-3,7")
        lo, hi = int(a), int(b) if dash else int(a)
        if hi < lo or hi - lo > 64:
            raise InputError(f"bad filter range {part[:20]!r}")
        out.extend(k for k in range(lo, hi + 1) if k not in out)
    if not out:
        raise InputError("give at least one filter number, e.g. 0-3")
    if len(out) > MAX_FILTERS:
        raise InputError(f"at most {MAX_FILTERS} filters per layer, got {len(out)}")
    return out


c1, c2 = st.columns([3, 1])
with c1:
    chosen = state.widget(st.multiselect, "Layers (shallow to deep)", f"{PAGE}.layers", default_layers(), "layers", options=names,
                          help="Pick a few depths; they are shown in the model's order.")
with c2:
    ftext = state.widget(st.text_input, "Filters of each layer", f"{PAGE}.filters", "0-3", "filters", help="Numbers and ranges, e.g. 0-3,7")
opts = widgets.method_controls(PAGE)

chosen = sorted(chosen, key=names.index)
targets: list[str] = []
bad = False
try:
    filters = parse_filters(ftext)
    if not chosen:
        raise InputError("choose at least one layer")
    for name in chosen:
        too_big = [k for k in filters if k >= info[name].channels]
        if too_big:
            raise InputError(f"layer {name} has {info[name].channels} filters (0-{info[name].channels - 1}); {too_big[0]} is out of range")
        targets += [f"filter:{name}:{k}" for k in filters]
    if len(targets) > state.limits().max_batch:
        raise InputError(f"{len(targets)} images in one run is too many here (at most {state.limits().max_batch}); choose fewer layers or filters")
except InputError as e:
    widgets.error(e)
    bad = True


def filter_label(target: str) -> str:
    """filter:blocks.1:0 -> blocks.1 filter 0"""
    return "{} filter {}".format(*target.split(":", 1)[1].rsplit(":", 1))


requests = [] if bad else [Request(choice.spec, tuple(targets), opts["method"], int(opts["steps"]), (int(opts["seed"]),),
                                   widgets.size_arg(int(opts["size"]), opts["method"]), choice.weights, choice.name,
                                   label=widgets.plural(len(targets), "filter"), target_labels=tuple(map(filter_label, targets)))]
go = st.button("Generate", type="primary", disabled=bad or widgets.running(PAGE))
results = widgets.run_panel(PAGE, requests, go) if requests else None
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


def caption(rec: dict) -> str:
    k = rec["target"].rsplit(":", 1)[1]
    act = rec.get("activation")
    pct = rec.get("percentile")
    text = f"filter {k}: {act:.2f}" if act is not None else f"filter {k}"
    return text + widgets.percentile_text(pct)


if results:
    recs = results[0]
    by_layer: dict[str, list[dict]] = {}
    for rec in recs:
        by_layer.setdefault(rec["target"].split(":")[1], []).append(rec)
    for name in chosen:
        l = info[name]
        st.markdown(f"**{name}** · {l.kind} · {l.channels} filters · output {'x'.join(map(str, l.shape))}")
        widgets.image_grid(by_layer.get(name, []), f"{PAGE}.{name}", columns=max(len(filters), 4), caption=caption,
                           on_open=widgets.open_dialog, open_label="Larger")
    widgets.zip_button(recs, PAGE, name="dgn-layers.zip")

if targets and not bad and not state.limits().hosted:
    st.markdown("#### The same filter in real images")
    c1, c2 = st.columns([3, 1])
    with c1:
        folder = state.widget(st.text_input, "Folder of real images (optional)", f"{PAGE}.folder", "", "folder", placeholder="/path/to/images",
                              help="Images in it and in its sub-folders are ranked by the filter's mean activation (read once, then cached on disk).")
    with c2:
        pick = state.widget(st.selectbox, "Filter", f"{PAGE}.exfilter", targets[0], "exfilter", options=targets, format_func=filter_label)
    if folder.strip():
        index = widgets.exemplar_index(clf, Path(folder.strip()).expanduser(), layers=[pick.split(":")[1]])
        if index is not None:
            gen_col, real_col = st.columns([1, 3])
            with gen_col:
                made = [r for r in (results[0] if results else []) if r["target"] == pick]
                if made:
                    st.image(made[0]["_file"], caption=f"generated: {caption(made[0])}", width="stretch")
                else:
                    st.caption("Press Generate to see the generated image beside them.")
            with real_col:
                widgets.exemplars_of(index, pick, filter_label(pick), score="mean activation")
