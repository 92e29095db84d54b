"""Bias audit: the whole model's classes ranked by a test, top suspects first, and one
class's generated images beside real samples of it (the paper's Fig. 6-7).

The first tab, "Audit the whole model" (``dashboard/audit_panel.py``), runs
:func:`dgncore.audit.pipeline.audit` on the built-in demo or on the sidebar's model with a folder of
images; the second, "Your class and samples", is the per-class view. The open tab is in
the URL (``?tab=...``). Both tabs take their images through :mod:`dashboard.samples`.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import (
    audit_panel,
    cards,
    charts,
    controls,
    downloads,
    exemplar_view,
    flow,
    page,
    runner,
    samples,
    state,
    words,
)
from dashboard.runner import Request
from dgncore.errors import InputError

PAGE = "audit"
WHOLE = "Audit the whole model"
ONE = "Your class and samples"


@st.cache_data(show_spinner=False, max_entries=64)
def predictions(paths: tuple[str, ...], mtimes: tuple[float, ...], model: str, _clf) -> list[list[tuple[int, float]]]:
    """The classifier's top-3 (index, p) on each sample image (eval mode)."""
    import torch

    from dgncore.data import load_image
    from dgncore.models.hardware import in_passing_thread

    def top3() -> list[list[tuple[int, float]]]:
        out: list[list[tuple[int, float]]] = []
        for start in range(0, len(paths), 16):
            batch = torch.stack([load_image(p, size=_clf.input_size) for p in paths[start : start + 16]])
            with torch.inference_mode():
                probs = torch.softmax(_clf.logits(batch).float(), 1).cpu()
            top = probs.topk(min(3, probs.shape[1]), dim=1)
            out += [[(int(i), float(v)) for v, i in zip(vs, ix)] for vs, ix in zip(top.values, top.indices)]
        return out

    return in_passing_thread(top3)  # not on the script thread (runner.load says why)


def matching_folder(folders: list[str], idx: int, clf) -> str:
    """The folder whose name means class ``idx`` (as the whole-model audit reads folder names), else the first."""
    from dgncore.audit.datasets import folder_classes

    means = folder_classes(folders, clf)
    return next((f for f in folders if means[f] == idx), folders[0])


st.title("Audit a model")
page.intro(
    "A classifier learns from examples, and it can learn the wrong lesson: if most photos of a class show the same "
    "background, hands or watermark, the network may rely on that instead of the object. The whole-model audit draws what "
    "the classifier imagines for every class, tests each drawing by pasting pieces of it onto other classes' images, and "
    "lists the classes whose pieces change the classifier's mind: the suspects. The second tab puts one class's imagined "
    "pictures beside real samples of it. A drawing is a lead worth checking; the pasting test is what confirms it."
)
choice, clf = page.need_model()

# the open tab is in the URL (?tab=...), so a reload or a shared link opens the same one
tabs = st.tabs([WHOLE, ONE], key="tab", bind="query-params")
with tabs[0]:
    audit_panel.render(audit_panel.AuditContext(choice, clf, runner.results_root()))
with tabs[1]:
    left, right = st.columns([1, 2])
    with left:
        idx = controls.class_picker(clf, f"{PAGE}.class", label="Class to audit")
    with right:
        root = samples.picker(PAGE, "source", "folder")

    samples_shown: list[str] = []
    if root is not None and idx is not None:
        from dgncore.data import scan_image_folder

        try:
            ds = scan_image_folder(root)
        except InputError as e:
            page.error(e)
            ds = None
        if ds is not None:
            c1, c2 = st.columns([2, 1])
            with c1:
                guess = matching_folder(ds.classes, idx, clf)
                sub = state.widget(st.selectbox, "Dataset folder of this class", f"{PAGE}.dsclass.{idx}", guess, "dsclass", options=ds.classes)
            with c2:
                n = state.widget(st.number_input, "Samples to show", f"{PAGE}.nsamples", 8, "nsamples", min_value=1, max_value=32, step=1)
            files = ds.files[sub][: int(n)]
            try:
                preds = predictions(tuple(map(str, files)), tuple(f.stat().st_mtime for f in files), choice.name, clf)
            except InputError as e:
                page.error(e)
                preds = []
            if preds:
                hits = sum(1 for p in preds if p[0][0] == idx)
                st.markdown(f"**The classifier's own view of these samples:** its top guess is *{words.md(clf.classes[idx])}* "
                            f"for {hits} of {len(preds)}.")
                counts: dict[str, int] = {}
                for p in preds:
                    counts[clf.classes[p[0][0]]] = counts.get(clf.classes[p[0][0]], 0) + 1
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
                colours = charts.palette()
                fig = go.Figure(go.Bar(x=[v for _, v in top], y=[k[:24] for k, _ in top], orientation="h",
                                       marker_color=[colours[0] if k == clf.classes[idx] else colours[min(5, len(colours) - 1)] for k, _ in top]))
                fig.update_layout(height=60 + 24 * len(top), margin=dict(l=10, r=10, t=28, b=10),
                                  title=dict(text="the classifier's top guess for each sample", font=dict(size=12)), yaxis=dict(autorange="reversed"),
                                  xaxis=dict(dtick=1))
                st.plotly_chart(fig, key=f"{PAGE}.predbar", width="stretch")
                samples_shown = [str(f) for f in files]
    else:
        st.caption("Name a folder or upload a ZIP to see real samples of the class beside the generated images.")

    st.markdown("#### What the classifier imagines for this class")
    opts = controls.advanced(PAGE, samples=True)
    seeds = tuple(range(int(opts["seed"]), int(opts["seed"]) + int(opts["samples"])))
    requests = [Request(choice.spec, (f"class:{idx}",), opts["method"], int(opts["steps"]), seeds,
                        controls.size_arg(int(opts["size"]), opts["method"]), choice.weights, choice.name, label=clf.classes[idx],
                        target_labels=(clf.classes[idx],))]
    results = flow.generate_panel(PAGE, requests, ready=runner.method_ready(opts["method"]))

    if results or samples_shown:
        gen_col, data_col = st.columns(2)
        with gen_col:
            st.markdown("**Generated**")
            if results:
                cards.image_grid(results[0], f"{PAGE}.gen", columns=2)
                downloads.zip_button(results[0], PAGE, name="dgn-audit.zip")
            else:
                st.caption("Press Generate to make them.")
        with data_col:
            st.markdown("**Dataset samples** (with the classifier's top-3)")
            pairs = list(zip(samples_shown, preds if samples_shown else []))
            for start in range(0, len(pairs), 3):
                cols = st.columns(3)
                for j, (path, p) in enumerate(pairs[start : start + 3]):
                    with cols[j]:
                        cap = words.md("; ".join(f"{clf.classes[i][:16]} {words.percent(v)}" for i, v in p))
                        st.image(path, caption=cap, width="stretch")
            if samples_shown:  # the whole folder ranked for the class (dgncore.audit.exemplars)
                index = exemplar_view.exemplar_index(clf, root)
                if index is not None:
                    exemplar_view.exemplars_of(index, f"class:{idx}", clf.classes[idx])
