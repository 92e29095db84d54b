"""Inside the layers: what single filters respond to, from shallow to deep (the paper's Fig. 8)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import (
    cards,
    controls,
    downloads,
    exemplar_view,
    flow,
    page,
    runner,
    state,
    words,
)
from dashboard.runner import Request
from dgncore.errors import InputError

PAGE = "layers"
MAX_FILTERS = 8
MAX_STAGES = 7

st.title("Inside the layers")
page.intro(
    "A classifier is a stack of layers; each layer has many filters, and each filter fires for some pattern. "
    "Here each picture is made to make one filter fire as strongly as it can. Shallow layers (top rows) usually answer "
    "to colours, edges and simple textures; deeper layers (lower rows) to parts and whole objects. "
    "Under each picture: how strongly the filter fires on it, compared with random pictures. "
    "For EfficientNet-Lite0 the page opens on ready-made pictures of the first filters of every stage; Generate makes your own."
)
choice, clf = page.need_model()

layers = clf.layers()
if not layers:
    st.info("This model has no layers that can be targeted (a TorchScript model allows class targets only). Use the See a class page.")
    st.stop()
names = [l.name for l in layers]
info = {l.name: l for l in layers}


def layer_label(name: str) -> str:
    """"blocks.3 · depth 31 of 60 · 80 filters"."""
    return f"{name} · depth {names.index(name) + 1} of {len(names)} · {info[name].channels} filters"


def default_layers() -> list[str]:
    """Every stage of the network, at most :data:`MAX_STAGES` (and no more than the server's
    pictures a run) spread from shallow to deep (EfficientNet-Lite0 has 7: the page opens on
    the shipped atlas of their first filters)."""
    stages = [l.name for l in layers if l.kind == "Sequential"] or names
    k = max(1, min(MAX_STAGES, state.limits().max_batch))  # a picture each, within the server's batch
    if len(stages) <= k:
        return stages
    return sorted({stages[round(i * (len(stages) - 1) / max(1, k - 1))] for i in range(k)}, key=stages.index)


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


chosen = state.widget(st.multiselect, "Layers (shallow to deep)", f"{PAGE}.layers", default_layers(), "layers", options=names,
                      format_func=layer_label, help="Pick a few depths; they are shown in the model's order.")


def default_filters() -> str:
    """The first four filters of each default layer, fewer where the server allows fewer pictures a run."""
    k = max(1, min(4, state.limits().max_batch // max(1, len(default_layers()))))
    return "0" if k == 1 else f"0-{k - 1}"


def which_filters() -> dict:
    text = state.widget(st.text_input, "Which filters of each layer", f"{PAGE}.filters", default_filters(), "filters",
                        help="Filter numbers and ranges, e.g. 0-3,7 (at most 8).")
    return {"filters": text}


opts = controls.advanced(PAGE, extra=which_filters)
chosen = sorted(chosen, key=names.index)
targets: list[str] = []
filters: list[int] = []
bad = False
try:
    filters = parse_filters(opts["filters"])
    if not chosen:
        raise InputError("choose at least one layer")
    for name in chosen:
        too_big = [k for k in filters if k >= info[name].channels]
        if too_big:
            raise InputError(f"layer {name} has {info[name].channels} filters (0-{info[name].channels - 1}); {too_big[0]} is out of range")
        targets += [f"filter:{name}:{k}" for k in filters]
    if len(targets) > state.limits().max_batch:
        raise InputError(f"{len(targets)} pictures in one run is too many here (at most {state.limits().max_batch}); choose fewer layers or filters")
except InputError as e:
    page.error(e)
    bad = True


def filter_label(target: str) -> str:
    """filter:blocks.1:0 -> blocks.1 filter 0"""
    return "{} filter {}".format(*target.split(":", 1)[1].rsplit(":", 1))


requests = [] if bad else [Request(choice.spec, tuple(targets), opts["method"], int(opts["steps"]), (int(opts["seed"]),),
                                   controls.size_arg(int(opts["size"]), opts["method"]), choice.weights, choice.name,
                                   label=words.plural(len(targets), "filter"), target_labels=tuple(map(filter_label, targets)))]
results = flow.generate_panel(PAGE, requests, ready=not bad and runner.method_ready(opts["method"]))


def caption(rec: dict) -> str:
    k = rec["target"].rsplit(":", 1)[1]
    return words.md(f"filter {k} " + words.result_sentence(rec))


def open_page(rec: dict) -> None:
    """The picture on a page of its own (the gallery's, with a link to share), else larger in a dialog."""
    key = runner.gallery_key(rec)
    if key is None:
        cards.open_dialog(rec)
    else:
        st.switch_page("views/gallery.py", query_params={"open": key})


if results:
    recs = results[0]
    by_layer: dict[str, list[dict]] = {}
    for rec in recs:
        by_layer.setdefault(rec["target"].split(":")[1], []).append(rec)
    for name in chosen:
        st.markdown(f"**{words.md(name)}** · {words.md(layer_label(name).split(' · ', 1)[1])}")
        cards.image_grid(by_layer.get(name, []), f"{PAGE}.{name}", columns=max(len(filters), 4), caption_of=caption,
                         on_open=open_page, open_label="Open")
    downloads.zip_button(recs, PAGE, name="dgn-layers.zip")

if targets and not bad and not state.limits().hosted:
    st.markdown("#### The same filter in real images")
    c1, c2 = st.columns([3, 1])
    with c1:
        folder = state.widget(st.text_input, "Folder of real images (optional)", f"{PAGE}.folder", "", "folder", placeholder="/path/to/images",
                              help="Images in it and in its sub-folders are ranked by how strongly the filter fires (read once, then cached on disk).")
    with c2:
        pick = state.widget(st.selectbox, "Filter", f"{PAGE}.exfilter", targets[0], "exfilter", options=targets, format_func=filter_label)
    if folder.strip():
        index = exemplar_view.exemplar_index(clf, Path(folder.strip()).expanduser(), layers=[pick.split(":")[1]])
        if index is not None:
            gen_col, real_col = st.columns([1, 3])
            with gen_col:
                made = [r for r in (results[0] if results else []) if r["target"] == pick]
                if made:
                    st.image(made[0]["_file"], caption=f"generated: {caption(made[0])}", width="stretch")
                else:
                    st.caption("Press Generate to see the generated picture beside them.")
            with real_col:
                exemplar_view.exemplars_of(index, pick, filter_label(pick), score="how strongly it fires")
