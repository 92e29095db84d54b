"""The "Planted-bias demo" tab of the bias-audit page (``dashboard/views/bias_audit.py``
calls :func:`render`).

It runs :mod:`dgncore.audit`: by default on the built-in model with a planted shortcut,
or, when the page's first tab names a folder, on the sidebar's model and that folder.
It shows the report: the cue score per class as a chart and a PASS/FAIL verdict per
method (built-in case only: a user's model has no cue detector), the generated images
beside the folder's samples and exemplars, and the report page and folder to download.

An audit runs as a job of the queue (a :class:`dgncore.jobs.AuditSpec`, sent by
:func:`dashboard.runner.submit_audit`), not as a :class:`dashboard.runner.Request`: it has
no target list and writes a report folder, not one record per target. As a queue job it
waits its turn behind other sessions' images instead of competing with them, goes on
when the tab is closed, and stops on "Stop the audit" (the live view is a fragment that
redraws itself; the page is not held while the audit runs). Its folder is
``<results>/audit/<model>-<hash of the settings>``: a reload shows the report again and
the same settings are served from disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, flow, page, runner, state, words
from dgncore.errors import InputError

DEMO = "The planted-bias demo"
OWN = "This model on this folder"
JOB = "audit.job"  # the session's last audit job (to say how it ended)
#: one colour per method (none of them red: red is FAIL), grey for the dataset's real images
COLOURS = {"untrained": "#1f77b4", "pretrained": "#2ca02c", "pixel": "#ff7f0e", "fourier": "#9467bd", "dataset": "#9aa7b8"}
BIASED_FILL = "#f3d3ee"
THUMB_W = 72


def render(ctx) -> None:
    """Draw the tab for ``ctx`` (a :class:`dashboard.views.bias_audit.AuditContext`)."""
    lim = state.limits()
    demo = True
    if ctx.dataset_root is not None:
        demo = state.widget(st.radio, "What to audit", "audit.of", DEMO, "audit_of", options=[DEMO, OWN], horizontal=True,
                            help="The demo audits a small built-in network with a shortcut planted on purpose; "
                                 "the other choice audits the sidebar's model with the folder of the first tab.") == DEMO
    if demo:
        intro()
        evidence_box = st.container()
    else:
        st.markdown(f"For each class of **{words.md(ctx.choice.name)}** found in the folder {words.md(ctx.dataset_root.name)}, the audit draws what the "
                    "classifier imagines and puts it beside real images of the class and the folder's images the classifier finds most "
                    "class-like. There is no cue detector for your own model, so no score and no verdict: look for what keeps coming back.")
    spec = audit_spec(ctx, demo, lim)
    folder = ctx.results_root / spec.out_dir if spec is not None else None

    job = runner.running_audit(spec.out_dir) if spec is not None else None
    go_ = st.button("Run the audit", type="primary", disabled=spec is None or job is not None, key="audit.go")
    if go_ and spec is not None and job is None:
        try:
            job = runner.submit_audit(spec)
        except InputError as e:
            page.error(e)
    if job is not None:
        st.session_state[JOB] = job
        follow(job.out_dir)  # a fragment: it reruns the page once the job has ended
        return
    if spec is None:
        return
    outcome(spec.out_dir)
    report = saved_report(folder)
    if demo:
        ev = (report or {}).get("builtin", {}).get("shortcut_evidence") or cached_evidence()
        with evidence_box:
            evidence(ev)
    if report is None:
        st.caption("No report for these settings yet: press Run the audit." + ("" if state.limits().hosted else f" It will be saved in `{folder}`."))
        return
    show_report(report, folder)


# --------------------------------------------------------------------------- the demo in words


def intro() -> None:
    from dgncore.planted import DEFAULT as cfg

    shapes = ", ".join(map(words.md, cfg.classes[:-1])) + f" and {words.md(cfg.classes[-1])}"
    biased = words.md(cfg.biased_class)
    page.intro(
        f"**A test with a known answer.** We drew small pictures of {len(cfg.classes)} shapes ({shapes}) and put a small "
        f"magenta stamp in a corner of {cfg.cue_rate_biased:.0%} of the **{biased}** pictures, and of only "
        f"{cfg.cue_rate_other:.0%} of the others, like a watermark. A small network trained on these pictures learned the shapes, "
        f"and it also learned the shortcut: a magenta stamp makes it say \"{biased}\". The audit asks each method to draw "
        f"what the network thinks each shape looks like and measures how much magenta stamp is in each drawing. A method "
        f"**passes** when the {biased} drawings, and only they, carry the stamp: it has revealed the planted shortcut."
    )


def cached_evidence() -> dict[str, Any] | None:
    """The demo model's shortcut evidence if it has been trained (never trains it)."""
    from dgncore.planted import DEFAULT, cache_root

    try:
        return json.loads((cache_root() / DEFAULT.key() / "info.json").read_text(encoding="utf-8")).get("shortcut_evidence")
    except (OSError, ValueError):
        return None


def evidence(ev: dict[str, Any] | None) -> None:
    """Proof that the demo model uses the shortcut, measured on held-out pictures."""
    if not ev:
        st.caption("The demo network is trained the first time an audit runs (a few minutes on one CPU core, then kept on disk).")
        return
    b = ev["biased_class"]
    st.markdown("**The network really uses the stamp.** The same held-out pictures, shown to it without and with the stamp:")
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Other shapes called {b} once stamped", f"{ev['others_predicted_biased_with_cue']:.0%}",
              f"{ev['others_predicted_biased_without_cue']:.0%} without the stamp", delta_color="off", delta_arrow="off")
    c2.metric(f"{b.capitalize()} pictures recognised", f"{ev['biased_accuracy_with_cue']:.0%}",
              f"{ev['biased_accuracy_without_cue']:.0%} without the stamp", delta_color="off", delta_arrow="off")
    c3.metric("All shapes, no stamp anywhere", f"{ev['mean_accuracy_without_cue']:.0%}", "recognised correctly", delta_color="off", delta_arrow="off")
    st.caption(f"{ev['n_per_class']} pictures per shape, each drawn twice: without and with the stamp.")


# --------------------------------------------------------------------------- settings


def audit_spec(ctx, demo: bool, lim):
    """The audit the controls describe, with its output folder; None after an error line."""
    from dgncore.audit import check_dataset, parse_methods, parse_seeds
    from dgncore.jobs import AuditSpec

    cols = st.columns([3, 1, 1] if demo else [3, 1, 1, 2])
    with cols[0]:
        methods = state.widget(st.multiselect, "Methods", "audit.demo.methods", ["untrained"], "audit_methods", options=runner.methods(),
                               format_func=words.method_label,
                               help="\n\n".join(f"**{words.method_label(m)}**: {words.method_blurb(m)}" for m in runner.methods())
                               + f"\n\nThe {words.method_label('untrained')} is the one that finds the planted stamp here.")
    with cols[1]:
        seeds = state.widget(st.text_input, "Seeds", "audit.demo.seeds", "0,1,2", "audit_seeds",
                             help="Each seed is a fresh start; a method passes only when it passes at every seed.")
    with cols[2]:
        steps = state.widget(st.number_input, "Steps", "audit.demo.steps", min(200, lim.max_steps), "audit_steps", min_value=1,
                             max_value=lim.max_steps, step=10, help="At most this many optimisation steps per image (each stops once the classifier is sure).")
    classes = ""
    if not demo:
        with cols[3]:
            classes = state.widget(st.text_input, "Classes", "audit.demo.classes", "", "audit_classes", placeholder="every class folder",
                                   help="A comma list of class names or indices; empty: every class with a folder.")
    try:
        if not methods:
            raise InputError("choose at least one method")
        common = dict(methods=tuple(parse_methods(methods)), seeds=tuple(parse_seeds(seeds)), steps=int(steps))
        if demo:
            from dgncore.planted import DEFAULT

            spec, data_key = AuditSpec(out_dir=".", builtin="planted", **common), DEFAULT.key()
        else:
            match = check_dataset(ctx.dataset_root, ctx.classifier)
            st.caption(f"{words.plural(len(match.folders), 'class folder')} in {words.md(ctx.dataset_root.name)}: "
                       + ", ".join(words.md(f"{f} → {ctx.classifier.classes[i]}") for f, i in list(match.class_of.items())[:8])
                       + (" …" if len(match.folders) > 8 else ""))
            names = tuple(c.strip() for c in classes.split(",") if c.strip())
            for c in names:  # a typo is one line now, not a failed job later
                ctx.classifier.class_index(c)
            spec = AuditSpec(out_dir=".", builtin=None, model=ctx.choice.spec, weights=ctx.choice.weights, model_name=ctx.choice.name,
                             dataset=str(ctx.dataset_root), classes=names, **common)
            data_key = folder_fingerprint(str(ctx.dataset_root))
        fields = {k: v for k, v in spec.to_dict().items() if k != "out_dir"}
        digest = hashlib.sha256(json.dumps([fields, data_key], sort_keys=True).encode()).hexdigest()[:12]
        spec = dataclasses.replace(spec, out_dir=f"audit/{runner.safe_name(spec.builtin or ctx.choice.name, 40)}-{digest}")
        spec.validate(lim)
    except InputError as e:
        page.error(e)
        return None
    return spec


@st.cache_data(ttl=5, show_spinner=False, max_entries=16)
def folder_fingerprint(root: str) -> str:
    """A hash of the folder's image names, sizes and times: a changed folder is a new audit."""
    from dgncore.exemplars import list_images

    paths, _labels, _truncated = list_images(root)
    h = hashlib.sha256()
    for rel in paths:
        st_ = os.stat(Path(root) / rel)
        h.update(f"{rel}\0{st_.st_size}\0{st_.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- running


@st.fragment(run_every=flow.LIVE_EVERY_S)
def follow(out_dir: str) -> None:
    """The audit's place in the queue or its stage, with the time left, redrawn until it
    ends; then the page reruns to show the report."""
    job = runner.running_audit(out_dir)
    if job is None:  # ended (or expired from the queue)
        st.rerun()
    try:
        s = job.status()
    except InputError as e:
        page.error(e)
        return
    if s.final:
        st.rerun()
    if s.state == "queued":
        place = s.position or 1
        label = f"Audit: waiting in the queue ({'next' if place == 1 else words.plural(place - 1, 'job') + ' ahead'})"
        done = 0.0
    else:
        elapsed = time.time() - (s.started or time.time())
        done = min(s.step / s.total, 1.0) if s.total else 0.0
        left = f" · {words.seconds_text(elapsed / done * (1 - done))} left" if done > 0.02 else ""
        label = f"Audit: {words.md(s.stage or 'starting')} · {int(elapsed)} s so far{left}"
    box = st.status(label, state="running", expanded=True)  # not `with`: that would mark it complete
    box.progress(done)
    if box.button("Stop the audit", key="audit.stop", icon=":material/stop_circle:",
                  help="Stop it; the images it finished are kept and reused by the next run. A waiting audit leaves the queue."):
        try:
            job.stop()
        except InputError as e:
            page.error(e)


def outcome(out_dir: str) -> None:
    """How this session's last audit of ``out_dir`` ended, when it did not end well."""
    job = st.session_state.get(JOB)
    if job is None:
        return
    try:
        s = job.status()
    except InputError:
        return
    if job.out_dir != out_dir:
        if not s.final:
            st.caption("The audit you started with other settings goes on in the background; its report will be there when you come back to them.")
        return
    if s.state == "failed":
        page.error(s.error or "the audit failed")
    elif s.state == "cancelled":
        st.warning(s.error or "Stopped. No report was written; the images finished so far are kept, and running again continues from them.")


def saved_report(folder: Path) -> dict[str, Any] | None:
    from dgncore.audit import load_report

    if not (folder / "report.json").is_file():
        return None
    try:
        return load_report(folder)
    except InputError as e:
        page.error(e)
        return None


# --------------------------------------------------------------------------- the report


def show_report(report: dict[str, Any], folder: Path) -> None:
    where = "" if state.limits().hosted else f", saved in `{folder}`"  # no server paths for visitors
    st.caption(f"Report of {report['created'][:16].replace('T', ' ')} ({report.get('seconds', '?')} s){where}: "
               "the same settings show it again, from disk.")
    downloads(folder)
    for m, why in report.get("skipped_methods", {}).items():
        st.caption(f"**{words.md(words.method_label(m))}** was skipped: {words.md(why)}")
    cue = report.get("cue")
    if cue and cue.get("biased_class"):
        verdicts(cue)
        st.plotly_chart(cue_chart(report), key="audit.cue", width="stretch")
    gallery(report, folder)


def verdicts(cue: dict[str, Any]) -> None:
    from dgncore.audit import CRITERION

    b = cue["biased_class"]
    for m, entry in cue["methods"].items():
        v = entry.get("verdict")
        if not v:
            continue
        said = (f"its {b} images carry the stamp and the other classes' do not" if v["pass"]
                else f"the stamp does not stand out in its {b} images")
        st.markdown(f"{':green-badge[PASS]' if v['pass'] else ':red-badge[FAIL]'} **{words.md(words.method_label(m))}**: {said} "
                    f"({v['passes']} of {words.plural(v['seeds'], 'seed')} pass).")
        st.caption(" · ".join(f"seed {r['seed']}: {b} {r['biased']:.3f} vs {r['max_other']:.3f}"
                              + (f" ({r['max_other_class']})" if r["max_other_class"] else "") for r in v["per_seed"]))
    st.caption(f"Pass rule, fixed before any run: {CRITERION}.")


def cue_chart(report: dict[str, Any]) -> go.Figure:
    """Mean cue score per class (bars, one colour per method and grey for the dataset's real
    images; error bars: sd over seeds), each seed as a dot, the planted class shaded."""
    from dgncore.audit import cue_rows

    rows = cue_rows(report)
    classes = list(report["classes"])
    biased = report["cue"].get("biased_class")
    sources = list(dict.fromkeys(r["source"] for r in rows))
    fig = go.Figure()
    for i, src in enumerate(sources):
        vals = [[r["cue"] for r in rows if r["source"] == src and r["class"] == c and r["cue"] is not None] for c in classes]
        colour = COLOURS.get(src) or charts.palette()[i % len(charts.palette())]
        sd = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals]
        fig.add_trace(go.Bar(
            x=classes, y=[float(np.mean(v)) if v else 0.0 for v in vals], offsetgroup=src, marker_color=colour,
            name="real images of the dataset" if src == "dataset" else f"{words.method_short(src)} (mean over seeds)",
            error_y=dict(type="data", array=sd, visible=any(sd), color="#555", thickness=1, width=3),
            hovertemplate="%{x}: %{y:.4f}<extra>" + src + "</extra>",
        ))
        if src != "dataset" and len(report["seeds"]) > 1:
            fig.add_trace(go.Scatter(
                x=[c for c, v in zip(classes, vals) for _ in v], y=[x for v in vals for x in v], offsetgroup=src, mode="markers",
                marker=dict(color="#222", size=5, symbol="circle-open"), name="one seed", legendgroup="seed", showlegend=i == 0, legendrank=2000,
                hovertemplate="%{x}: %{y:.4f}<extra>" + src + " (one seed)</extra>",
            ))
    if biased in classes:
        j = classes.index(biased)
        fig.add_vrect(x0=j - 0.5, x1=j + 0.5, fillcolor=BIASED_FILL, opacity=0.6, layer="below", line_width=0)
        fig.add_annotation(x=biased, y=1, yref="paper", yanchor="bottom", showarrow=False, text="the stamp was planted in this class",
                           font=dict(size=11, color="#9c2f8f"))
    fig.update_layout(
        barmode="group", scattermode="group", height=360, margin=dict(l=10, r=10, t=60, b=10),
        title=dict(text="How much magenta stamp is in each class's images", font=dict(size=14)),
        legend=dict(orientation="h", y=-0.18), bargap=0.25,
        xaxis=dict(tickvals=classes, ticktext=[f"<b>{c}</b>" if c == biased else c for c in classes]),
        yaxis=dict(title="share of the image in magenta patches", rangemode="tozero", tickformat=".0%" if _peak(rows) >= 0.05 else ".1%"),
    )
    return fig


def _peak(rows: list[dict[str, Any]]) -> float:
    return max((r["cue"] or 0.0 for r in rows), default=0.0)


def gallery(report: dict[str, Any], folder: Path) -> None:
    """Per class: the generated images beside the dataset's samples and exemplars."""
    dc = report.get("dataset_classes") or {}
    biased = (report.get("cue") or {}).get("biased_class")
    has_cue = bool(report.get("cue"))
    per_method = len(report["seeds"]) * report.get("k", 1)
    ratios = [max(2, min(per_method, 6)), 4, 4] if dc else [1]
    st.markdown("##### What each method drew, beside real images")
    head = st.columns(ratios)
    head[0].caption("**Generated**: seed · p(class)" + (" · cue score" if has_cue else ""))
    if dc:
        head[1].caption("**Dataset samples**: the classifier's answer (✗ wrong)" + (" · stamp" if has_cue else ""))
        head[2].caption("**Most class-like real images**: their folder · logit")
    for c in report["classes"]:
        d = dc.get(c, {})
        with st.container(border=True):
            st.markdown(class_line(c, d, c == biased))
            cols = st.columns(ratios)
            with cols[0]:
                for m in report["methods"]:
                    made = report["generated"].get(m, {}).get(c, [])
                    st.caption(words.md(words.method_short(m)))
                    thumbs(folder, [r["png"] for r in made], [gen_caption(r) for r in made])
            if not dc:
                continue
            with cols[1]:
                samples = d.get("samples") or []
                thumbs(folder, [s["thumb"] for s in samples],
                       [("" if s["correct"] else "✗ ") + f"{s['predicted']} {s['p_predicted']:.2f}" + stamp(s) for s in samples])
            with cols[2]:
                ex = d.get("exemplars") or {}
                for key, label in (("top", "anywhere in the folder"), ("top_other_classes", "in the other classes' folders (where a shortcut shows first)")):
                    if ex.get(key):
                        st.caption(label)
                        thumbs(folder, [e["thumb"] for e in ex[key]], [f"{e['label']} · {e['logit']:.1f}" + stamp(e) for e in ex[key]])


def class_line(name: str, d: dict[str, Any], biased: bool) -> str:
    bits = [f"**{words.md(name)}**" + (" · :violet[**the class with the planted stamp**]" if biased else "")]
    if d.get("accuracy") is not None:
        bits.append(f"the classifier gets {d['accuracy']:.0%} of its {d.get('n_images')} folder images right")
    if (d.get("cue") or {}).get("with_cue") is not None:
        bits.append(f"{d['cue']['with_cue']:.0%} of them carry the stamp")
    return " · ".join(bits)


def gen_caption(r: dict[str, Any]) -> str:
    p = "-" if r.get("p_target") is None else f"{r['p_target']:.2f}"
    return f"s{r['seed']} · p {p}" + (f" · {r['cue']:.3f}" if "cue" in r else "")


def stamp(row: dict[str, Any]) -> str:
    return " · stamp" if row.get("cue", 0) > 0 else ""


def thumbs(folder: Path, rels: list[str], captions: list[str]) -> None:
    files = [folder / r for r in rels if (folder / r).is_file()]
    if files:
        st.image([str(f) for f in files], caption=[words.md(c) for r, c in zip(rels, captions) if (folder / r).is_file()], width=THUMB_W)
    else:
        st.caption("none")


def downloads(folder: Path) -> None:
    html = folder / "report.html"
    c1, c2, _ = st.columns([1, 1, 2])
    if html.is_file():
        c1.download_button("Report page (HTML)", data=html.read_bytes, file_name="bias-audit-report.html", mime="text/html",
                           key="audit.html", on_click="ignore", icon=":material/download:", width="stretch",
                           help="One self-contained page with every image: open it in a browser or send it to someone.")
    c2.download_button("Report folder (ZIP)", data=lambda: zip_folder(folder), file_name=f"bias-audit-{folder.name}.zip",
                       mime="application/zip", key="audit.zip", on_click="ignore", icon=":material/folder_zip:", width="stretch",
                       help="report.json with every number, report.html, and every image.")


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file() and not f.is_symlink():
                zf.write(f, f.relative_to(folder).as_posix())
    return buf.getvalue()
