"""The "Audit the whole model" tab of the bias-audit page (``dashboard/views/bias_audit.py``
calls :func:`render`), which leads the page.

It runs :func:`dgncore.audit.pipeline.audit` on every class of a model (or a chosen list): a built-in
model with a planted shortcut (the demo, several cues and strengths), or the sidebar's
model on a folder or ZIP of its classes' images. Each class is tested by intervention
(:mod:`dgncore.audit.intervention`: pieces of the generated pictures pasted onto other classes'
images), and the report leads with the classes ranked by that test, top suspects first:
a table with the verdicts, a chart of the flip rates with their intervals, then one box
per class with its verdict, the intervention picture, the generated images, the
dataset's samples and its most and least class-like images. Built-in models also get the
cue-score chart and a PASS/FAIL verdict per method (a user's model has no cue detector).

An audit runs as a job of the queue (a :class:`dgncore.serving.specs.AuditSpec`, sent by
:func:`dashboard.runner.submit_audit`), not as a :class:`dashboard.runner.Request`: it has
no target list and writes a report folder, not one record per target. As a queue job it
waits its turn behind other sessions' images instead of competing with them, goes on
when the tab is closed, and stops on "Stop the audit" (the live view is a fragment that
redraws itself with the step it is in and the seconds left in that step). Its folder is
``<results>/audit/<model>-<hash of the settings>``: a reload shows the report again, the
same settings are served from disk, and "Saved audits" reopens any report kept there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, flow, page, runner, samples, state, words
from dgncore.drawing.registry import AUDIT_DEFAULT_METHODS
from dgncore.errors import InputError

DEMO = "A built-in model with a planted shortcut (the demo)"
OWN = "The sidebar's model on your images"
CURRENT = ""  # the "Saved audits" entry that means: the report of the settings above
JOB = "audit.job"  # the session's last audit job (to say how it ended)
#: one colour per method (none of them red: red is FAIL), grey for the dataset's real images
COLOURS = {"untrained": "#1f77b4", "pretrained": "#2ca02c", "pixel": "#ff7f0e", "fourier": "#9467bd", "dataset": "#9aa7b8"}
#: the suspects chart: what was pasted (the generated pictures' piece in the verdict's colour family, the controls grey)
SOURCES = {"generated": ("pasted from the generated images", "#d62728"), "located_real": ("pasted from real images of the class", "#1f77b4"),
           "real": ("control: random places of the class's real images", "#9aa7b8"), "random": ("control: random places of other classes' images", "#5f6b7a")}
BIASED_FILL = "#f3d3ee"
THUMB_W = 72


@dataclass
class AuditContext:
    """What the page hands to the tab."""

    choice: Any  # state.ModelChoice
    classifier: Any  # dgncore Classifier
    results_root: Path


def render(ctx: AuditContext) -> None:
    """Draw the tab: what to audit, its settings under Advanced, Run, the live progress,
    the saved audits, and the chosen report."""
    lim = state.limits()
    own = bool(samples.sources()) and state.widget(
        st.radio, "What to audit", "whole.of", DEMO, "audit_of", options=[DEMO, OWN], horizontal=True,
        help="The demo audits a small built-in network trained with a shortcut planted on purpose, so you can see what a found shortcut "
             "looks like; the other choice audits the model chosen in the sidebar with images of its classes.") == OWN
    builtin: str | None = None
    root: Path | None = None
    if own:
        st.markdown(f"Every class of **{words.md(ctx.choice.name)}** that has a folder of images (or the classes you name under Advanced) is "
                    "drawn as the classifier imagines it, then tested: a piece of each drawing is pasted onto other classes' images, and "
                    "a class whose piece makes the classifier change its mind, while real images of the class carry such a piece too, "
                    "is a suspect. The suspects come first.")
        root = samples.picker("whole.data", "audit_source", "audit_folder", label="Images of the model's classes (ImageFolder: one sub-folder per class)")
        if root is None:
            st.caption("Name a folder or upload a ZIP to audit your model on it.")
    else:
        options = builtin_options()
        builtin = state.widget(st.selectbox, "Built-in model", "whole.builtin", "planted", "audit_builtin", options=list(options),
                               format_func=options.get, help="The same five shapes each time; what changes is the cue planted in them and how often.")
        intro(builtin)
        evidence(builtin)
    spec = audit_spec(ctx, builtin, root, lim) if (builtin or root is not None) else None
    job = runner.running_audit(spec.out_dir) if spec is not None else None
    if st.button("Run the audit", type="primary", disabled=spec is None or job is not None, key="audit.go") and spec is not None and job is None:
        try:
            job = runner.submit_audit(spec)
        except InputError as e:
            page.error(e)
    if job is not None:
        st.session_state[JOB] = job
        follow(job.out_dir)  # a fragment: it reruns the page once the job has ended
    elif spec is not None:
        outcome(spec.out_dir)
    opened = saved_select(ctx.results_root)
    if opened != CURRENT:
        folder = ctx.results_root / "audit" / opened
    elif spec is not None and job is None:
        folder = ctx.results_root / spec.out_dir
    else:
        return
    report = saved_report(folder)
    if report is None:
        st.caption("No report for these settings yet: press Run the audit." + ("" if lim.hosted else f" It will be saved in `{folder}`."))
        return
    show_report(report, folder)


# --------------------------------------------------------------------------- the built-in models in words


def builtin_options() -> dict[str, str]:
    """Every built-in planted model, by name, in plain words: each cue at each strength, and its control."""
    from dgncore.audit.planted import BIASED_CLASS, CUE_KINDS, CUE_RATE_BIASED, CUE_RATE_CONTROL, STRENGTHS

    what = {"stamp": "magenta stamp", "stripes": "faint stripes", "sepia": "sepia tone", "sticker": "yellow sticker"}
    out: dict[str, str] = {}
    for cue in CUE_KINDS:
        base = "planted" if cue == "stamp" else f"planted-{cue}"
        for rate in STRENGTHS:
            name = base if cue == "stamp" and rate == CUE_RATE_BIASED else f"{base}@{rate:g}"
            out[name] = f"{what[cue].capitalize()} on {rate:.0%} of the {BIASED_CLASS}s"
        out[f"{base}-control"] = f"{what[cue].capitalize()} on {CUE_RATE_CONTROL:.0%} of every shape (the control: no shortcut to find)"
    return dict(sorted(out.items(), key=lambda kv: kv[0] != "planted"))  # the original demo first


def intro(builtin: str) -> None:
    from dgncore.audit.planted import cue_kind, parse_builtin

    cfg = parse_builtin(builtin)
    shapes = ", ".join(map(words.md, cfg.classes[:-1])) + f" and {words.md(cfg.classes[-1])}"
    biased = words.md(cfg.biased_class)
    cue = cue_kind(cfg.cue).description
    if cfg.is_control:
        planted = (f"added {cue} to {cfg.cue_rate_biased:.0%} of the pictures of **every** shape: the cue says nothing about the shape, "
                   "so a good audit finds no shortcut here")
    else:
        planted = (f"added {cue} to {cfg.cue_rate_biased:.0%} of the **{biased}** pictures, and to only {cfg.cue_rate_other:.0%} of the "
                   f"others. A small network trained on these pictures learned the shapes, and it also learned the shortcut: the cue "
                   f"makes it say \"{biased}\". A good audit puts {biased} first, confirmed")
    page.intro(f"**A test with a known answer.** We drew small pictures of {len(cfg.classes)} shapes ({shapes}) and {planted}. The audit "
               "draws what the network imagines for each shape, tests each drawing by pasting pieces of it onto other shapes' pictures, and "
               "ranks the shapes by how often that changes the network's answer.")


def cached_evidence(builtin: str) -> dict[str, Any] | None:
    """The built-in model's shortcut evidence if it has been trained (never trains it)."""
    from dgncore.audit.planted import cache_root, parse_builtin

    try:
        return json.loads((cache_root() / parse_builtin(builtin).key() / "info.json").read_text(encoding="utf-8")).get("shortcut_evidence")
    except (OSError, ValueError):
        return None


def evidence(builtin: str) -> None:
    """Proof that the built-in model uses its cue, measured on held-out pictures."""
    ev = cached_evidence(builtin)
    if not ev:
        st.caption("This built-in network is trained the first time an audit of it runs (a few minutes on one CPU core, then kept on disk).")
        return
    b = ev["biased_class"]
    st.markdown("**How much the network uses the cue.** The same held-out pictures, shown to it without and with the cue:")
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Other shapes called {b} with the cue", f"{ev['others_predicted_biased_with_cue']:.0%}",
              f"{ev['others_predicted_biased_without_cue']:.0%} without it", delta_color="off", delta_arrow="off")
    c2.metric(f"{b.capitalize()} pictures recognised", f"{ev['biased_accuracy_with_cue']:.0%}",
              f"{ev['biased_accuracy_without_cue']:.0%} without the cue", delta_color="off", delta_arrow="off")
    c3.metric("All shapes, no cue anywhere", f"{ev['mean_accuracy_without_cue']:.0%}", "recognised correctly", delta_color="off", delta_arrow="off")
    st.caption(f"{ev['n_per_class']} pictures per shape, each drawn twice: without and with the cue.")


# --------------------------------------------------------------------------- settings


def audit_spec(ctx: AuditContext, builtin: str | None, root: Path | None, lim):
    """The audit the controls describe, with its output folder; None after an error line."""
    from dgncore.audit.datasets import check_dataset
    from dgncore.audit.methods import parse_methods, parse_seeds
    from dgncore.serving.specs import AuditSpec

    demo = builtin is not None
    with st.expander("Advanced: methods, seeds, steps, classes, prior"):
        c1, c2, c3 = st.columns([3, 1, 1])
        methods = state.widget(c1.multiselect, "Methods", "whole.methods", list(AUDIT_DEFAULT_METHODS), "audit_methods", options=runner.methods(),
                               format_func=words.method_label,
                               help="\n\n".join(f"**{words.method_label(m)}**: {words.method_blurb(m)}" for m in runner.methods()))
        with c2:
            seeds = state.widget(st.text_input, "Seeds", "whole.seeds", "0,1,2", "audit_seeds",
                                 help="Each seed is a fresh start; a verdict needs most seeds to agree.")
        with c3:
            steps = state.widget(st.number_input, "Steps", "whole.steps", min(200, lim.max_steps), "audit_steps", min_value=1,
                                 max_value=lim.max_steps, step=10, help="At most this many optimisation steps per image (each stops once the classifier is sure).")
        classes = "" if demo else state.widget(st.text_input, "Classes", "whole.classes", "", "audit_classes", placeholder="every class folder",
                                               help="A comma list of class names or indices; empty: every class with a folder.")
        prior = state.widget(st.checkbox, "Train a prior on this data (slow the first time)", f"whole.prior.{'demo' if demo else 'own'}", False,
                             "audit_prior",
                             help="Train a small picture decoder on the dataset's own images and use it for the image-prior method, so its "
                                  "drawings look like the data. The first time for a folder it takes long (the demo's: about 45 minutes on "
                                  "a busy 2-core CPU, far less on a GPU; the progress box shows the time left); it is then kept on disk, "
                                  "and a stopped training goes on where it stopped.")
    try:
        if not methods:
            raise InputError("choose at least one method")
        common = dict(methods=tuple(parse_methods(methods)), seeds=tuple(parse_seeds(seeds)), steps=int(steps), train_prior=bool(prior), intervene=True)
        if demo:
            from dgncore.audit.planted import parse_builtin

            spec, data_key = AuditSpec(out_dir=".", builtin=builtin, **common), parse_builtin(builtin).key()
        else:
            match = check_dataset(root, ctx.classifier)
            st.caption(f"{words.plural(len(match.folders), 'class folder')} in {words.md(root.name)}: "
                       + ", ".join(words.md(f"{f} → {ctx.classifier.classes[i]}") for f, i in list(match.class_of.items())[:8])
                       + (" …" if len(match.folders) > 8 else ""))
            names = tuple(c.strip() for c in classes.split(",") if c.strip())
            for c in names:  # a typo is one line now, not a failed job later
                ctx.classifier.class_index(c)
            spec = AuditSpec(out_dir=".", builtin=None, model=ctx.choice.spec, weights=ctx.choice.weights, model_name=ctx.choice.name,
                             dataset=str(root), classes=names, **common)
            data_key = folder_fingerprint(str(root))
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
    from dgncore.data import list_images

    paths, _labels, _truncated = list_images(root)
    h = hashlib.sha256()
    for rel in paths:
        st_ = os.stat(Path(root) / rel)
        h.update(f"{rel}\0{st_.st_size}\0{st_.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- running


def progress_text(s, now: float | None = None) -> tuple[str, float]:
    """The live line of an audit job's status ``s`` and the share done of its current step:
    "Audit, step 4 of 6: drawing ... · untrained seed 1: step 40/200 · about 52 s left in this step"."""
    if s.state == "queued":
        place = s.position or 1
        return f"Audit: waiting in the queue ({'next' if place == 1 else words.plural(place - 1, 'job') + ' ahead'})", 0.0
    now = time.time() if now is None else now
    elapsed = now - (s.started or now)
    done = min(s.step / s.total, 1.0) if s.total else 0.0
    bits = [f"Audit, {words.audit_phase(s.phase, s.phase_no, s.phases)}"]
    if s.stage:
        bits.append(words.md(s.stage))
    if s.left_s is not None:
        bits.append(f"{words.seconds_text(s.left_s)} left in this step")
    bits.append(f"{int(elapsed)} s so far")
    return " · ".join(bits), done


@st.fragment(run_every=flow.LIVE_EVERY_S)
def follow(out_dir: str) -> None:
    """The audit's place in the queue, or its step and the seconds left in it, redrawn
    until it ends; then the page reruns to show the report."""
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
    label, done = progress_text(s)
    box = st.status(label, state="running", expanded=True)  # not `with`: that would mark it complete
    box.progress(done, text="this step")
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


# --------------------------------------------------------------------------- saved audits


@st.cache_data(show_spinner=False, max_entries=8)
def _summaries(stamps: tuple[tuple[str, float], ...], root: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, _mtime in stamps:
        try:
            r = json.loads((Path(root) / name / "report.json").read_text(encoding="utf-8"))
            iv = r.get("intervention") or {}
            top = (iv.get("ranking") or [None])[0]
            out[name] = {"created": str(r.get("created", "")), "model": str(r.get("model", "?")), "classes": len(r.get("classes") or []),
                         "dataset": "its own pictures" if r.get("builtin") else Path(str(r.get("dataset") or "no dataset")).name,
                         "top": top, "verdict": (iv.get("classes") or {}).get(top, {}).get("verdict") if top else None}
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return out


def saved_audits(results_root: Path) -> dict[str, dict[str, Any]]:
    """Every report folder under ``<results>/audit/``, newest first: its model, dataset name
    (never a path), date, number of classes and top suspect."""
    base = results_root / "audit"
    stamps = sorted(((f.parent.name, f.stat().st_mtime) for f in base.glob("*/report.json")), key=lambda t: -t[1]) if base.is_dir() else []
    return _summaries(tuple(stamps), str(base))


def saved_label(s: dict[str, Any]) -> str:
    top = f" · top suspect: {s['top']} ({s['verdict']})" if s.get("top") and s.get("verdict") not in (None, "none") else \
        (" · no suspect" if s.get("top") else "")
    return f"{s['created'][:16].replace('T', ' ')} · {s['model']} on {s['dataset']} · {s['classes']} {'class' if s['classes'] == 1 else 'classes'}{top}"


def saved_select(results_root: Path) -> str:
    """The "Saved audits" select: CURRENT (the report of the settings above) or a folder name under ``<results>/audit``."""
    found = saved_audits(results_root)
    if not found:
        return CURRENT
    options = [CURRENT] + list(found)
    return state.widget(st.selectbox, f"Saved audits ({len(found)}, newest first)", "whole.open", CURRENT, "audit_open", options=options,
                        format_func=lambda n: "The audit of the settings above" if n == CURRENT else saved_label(found[n]),
                        help="Every audit run on this server is kept: open any of them again.")


def saved_report(folder: Path) -> dict[str, Any] | None:
    from dgncore.audit.run import load_report

    if not (folder / "report.json").is_file():
        return None
    try:
        return load_report(folder)
    except InputError as e:
        page.error(e)
        return None


# --------------------------------------------------------------------------- the report


def show_report(report: dict[str, Any], folder: Path) -> None:
    """The report: its line and downloads, the suspects (table and chart), the built-in
    model's cue verdicts, then one box per class, top suspects first."""
    where = "" if state.limits().hosted else f", saved in `{folder}`"  # no server paths for visitors
    st.caption(f"Report of {words.md(report['model'])}, {report['created'][:16].replace('T', ' ')} ({report.get('seconds', '?')} s){where}: "
               "kept on disk, the same settings show it again.")
    downloads(folder)
    for m, why in report.get("skipped_methods", {}).items():
        st.caption(f"**{words.md(words.method_label(m))}** was skipped: {words.md(why)}")
    if report.get("intervention"):
        suspects(report["intervention"])
        st.plotly_chart(suspects_chart(report["intervention"]), key="audit.suspects", width="stretch")
    cue = report.get("cue")
    if cue and cue.get("biased_class"):
        st.markdown("##### The cue detector's view (built-in models only)")
        verdicts(cue)
        st.plotly_chart(cue_chart(report), key="audit.cue", width="stretch")
    class_boxes(report, folder)


def suspects(iv: dict[str, Any]) -> None:
    """The classes ranked by the intervention, top suspects first, as a table."""
    st.markdown("##### Suspects, most suspicious first")
    rows = ["| rank | class | verdict | what was pasted | pasted from the generated images | pasted from real images of the class "
            "| pasted from random places (controls) |", "|---:|---|---|---|---|---|---|"]
    for c in iv["ranking"]:
        r = iv["classes"][c]
        rows.append(f"| {r.get('rank', '')} | **{words.md(c)}** | {words.verdict_badge(r['verdict'])} | {words.PASTED.get(r.get('kind'), '-')} "
                    f"| {words.flip_rate(_generated(r))} | {words.flip_rate(r.get('located_real'))} | {controls_text(r)} |")
    st.markdown("\n".join(rows))
    st.caption("Each figure is the share of other classes' images that the classifier calls the class once a piece of a picture is pasted "
               "on (or, for a cue spread over the whole image, once its texture or colours are carried over), with its 95% interval. "
               "Pasted from the generated images: the piece of the pictures the audit drew that carries the class. From real images "
               "of the class: the same piece found in the class's own images (a shortcut is something the data carries). From random "
               "places: pieces of the same size taken anywhere, of the class's images and of other classes' (does pasting anything "
               "do this?). Verdict rule, fixed before any run (G: pasted from the generated images; L: from real images of the class): "
               f"{words.md(iv.get('criterion', ''))}")


def _generated(r: dict[str, Any]) -> dict[str, Any] | None:
    """The class's verdict-giving rate of its generated images (its method and kind)."""
    return {"n": 1, "rate": r.get("flip_rate"), "ci": r.get("ci")} if r.get("flip_rate") is not None else None


def controls_text(r: dict[str, Any]) -> str:
    ctrl = r.get("controls") or {}
    said = {"real": "of the class", "random": "of other classes"}
    return "; ".join(f"{said.get(k, words.md(k))} {words.flip_rate(v)}" for k, v in ctrl.items()) or "-"


def suspects_chart(iv: dict[str, Any]) -> go.Figure:
    """Flip rates per class, in ranking order: the generated images' pieces against the
    class's real images' and the two controls, each with its 95% interval."""
    classes = list(iv["ranking"])
    fig = go.Figure()
    for key, (name, colour) in SOURCES.items():
        rates = [_generated(iv["classes"][c]) if key == "generated" else
                 iv["classes"][c].get("located_real") if key == "located_real" else (iv["classes"][c].get("controls") or {}).get(key) for c in classes]
        if not any(r and r.get("rate") is not None for r in rates):
            continue
        y = [r["rate"] if r and r.get("rate") is not None else None for r in rates]
        fig.add_trace(go.Scatter(
            x=classes, y=y, mode="markers", name=name, offsetgroup=key, marker=dict(color=colour, size=10 if key == "generated" else 8),
            error_y=dict(type="data", symmetric=False, array=[(r["ci"][1] - r["rate"]) if v is not None else None for r, v in zip(rates, y)],
                         arrayminus=[(r["rate"] - r["ci"][0]) if v is not None else None for r, v in zip(rates, y)], color=colour, thickness=1.5, width=4),
            hovertemplate="%{x}: %{y:.0%}<extra>" + name + "</extra>",
        ))
    verdicts_ = [iv["classes"][c]["verdict"] for c in classes]
    marks = {"confirmed shortcut": "#d62728", "suspected": "#ff7f0e"}
    fig.update_layout(
        scattermode="group", height=380, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2),
        title=dict(text="How often pasting a piece makes the classifier say the class (95% intervals)", font=dict(size=14)),
        xaxis=dict(tickvals=classes, ticktext=[f"<b>{c}</b>" if v in marks else c for c, v in zip(classes, verdicts_)]),
        yaxis=dict(title="other classes' images that flip", range=[0, 1.05], tickformat=".0%"),
    )
    for j, v in enumerate(verdicts_):
        if v in marks:
            fig.add_vrect(x0=j - 0.5, x1=j + 0.5, fillcolor=marks[v], opacity=0.08, layer="below", line_width=0)
    return fig


def verdicts(cue: dict[str, Any]) -> None:
    from dgncore.audit.run import CRITERION

    b = cue["biased_class"]
    for m, entry in cue["methods"].items():
        v = entry.get("verdict")
        if not v:
            continue
        said = (f"its {b} images carry the cue and the other classes' do not" if v["pass"]
                else f"the cue does not stand out in its {b} images")
        st.markdown(f"{':green-badge[PASS]' if v['pass'] else ':red-badge[FAIL]'} **{words.md(words.method_label(m))}**: {said} "
                    f"({v['passes']} of {words.plural(v['seeds'], 'seed')} pass).")
        st.caption(" · ".join(f"seed {r['seed']}: {b} {r['biased']:.3f} vs {r['max_other']:.3f}"
                              + (f" ({r['max_other_class']})" if r["max_other_class"] else "") for r in v["per_seed"]))
    st.caption(f"Pass rule, fixed before any run: {CRITERION}.")


def cue_chart(report: dict[str, Any]) -> go.Figure:
    """Mean cue score per class (bars, one colour per method and grey for the dataset's real
    images; error bars: sd over seeds), each seed as a dot, the planted class shaded."""
    from dgncore.audit.run import cue_rows

    rows = cue_rows(report)
    classes = list(report["classes"])
    biased = report["cue"].get("biased_class")
    what, _, measure = str(report["cue"].get("name") or "the cue: cue score").partition(": ")
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
        fig.add_annotation(x=biased, y=1, yref="paper", yanchor="bottom", showarrow=False, text="the cue was planted in this class",
                           font=dict(size=11, color="#9c2f8f"))
    fig.update_layout(
        barmode="group", scattermode="group", height=360, margin=dict(l=10, r=10, t=60, b=10),
        title=dict(text=f"How much {what} is in each class's images", font=dict(size=14)),
        legend=dict(orientation="h", y=-0.18), bargap=0.25,
        xaxis=dict(tickvals=classes, ticktext=[f"<b>{c}</b>" if c == biased else c for c in classes]),
        yaxis=dict(title=measure, rangemode="tozero", tickformat=".0%" if _peak(rows) >= 0.05 else ".1%"),
    )
    return fig


def _peak(rows: list[dict[str, Any]]) -> float:
    return max((r["cue"] or 0.0 for r in rows), default=0.0)


def class_boxes(report: dict[str, Any], folder: Path) -> None:
    """Per class, top suspects first: its verdict with the numbers and the intervention
    picture, then the generated images beside the dataset's samples and exemplars."""
    dc = report.get("dataset_classes") or {}
    iv = report.get("intervention") or {}
    biased = (report.get("cue") or {}).get("biased_class")
    has_cue = bool(report.get("cue"))
    per_method = len(report["seeds"]) * report.get("k", 1)
    ratios = [max(2, min(per_method, 6)), 4, 4] if dc else [1]
    order = list(iv.get("ranking") or []) + [c for c in report["classes"] if c not in (iv.get("ranking") or [])]
    st.markdown("##### Each class" + (", most suspicious first" if iv else "") + ": what each method drew, beside real images")
    head = st.columns(ratios)
    head[0].caption("**Generated**: seed · p(class)" + (" · cue score" if has_cue else ""))
    if dc:
        head[1].caption("**Dataset samples**: the classifier's answer (✗ wrong)" + (" · cue" if has_cue else ""))
        head[2].caption("**Real images**: their folder · the classifier's raw score for the class")
    for c in order:
        d = dc.get(c, {})
        with st.container(border=True):
            st.markdown(class_line(c, d, c == biased))
            entry = (iv.get("classes") or {}).get(c)
            if entry:
                st.markdown(suspect_line(c, entry))
                if entry.get("picture") and (folder / entry["picture"]).is_file():
                    st.image(str(folder / entry["picture"]), caption=f"what the audit pasted for {words.md(c)}, and onto what", width="stretch")
            cols = st.columns(ratios)
            with cols[0]:
                for m in report["methods"]:
                    made = report["generated"].get(m, {}).get(c, [])
                    st.caption(words.md(words.method_short(m)))
                    thumbs(folder, [r["png"] for r in made], [gen_caption(r) for r in made])
            if not dc:
                continue
            with cols[1]:
                samples_ = d.get("samples") or []
                thumbs(folder, [s["thumb"] for s in samples_],
                       [("" if s["correct"] else "✗ ") + f"{s['predicted']} {s['p_predicted']:.2f}" + stamp(s) for s in samples_])
            with cols[2]:
                ex = d.get("exemplars") or {}
                for key, label in (("top", "most class-like, anywhere in the folder"),
                                   ("top_other_classes", "most class-like in the other classes' folders (where a shortcut shows first)"),
                                   ("bottom", "least class-like")):
                    if ex.get(key):
                        st.caption(label)
                        thumbs(folder, [e["thumb"] for e in ex[key]], [f"{e['label']} · {e['logit']:.1f}" + stamp(e) for e in ex[key]])


def suspect_line(name: str, r: dict[str, Any]) -> str:
    """The class's verdict with its numbers, in words."""
    if r.get("flip_rate") is None:
        return f"{words.verdict_badge(r['verdict'])} not tested" + (f": {words.md(r['note'])}" if r.get("note") else "")
    pasted = words.PASTED.get(r.get("kind"), "a piece")
    out = (f"{words.verdict_badge(r['verdict'])} rank {r.get('rank', '?')} · {pasted} of the generated images "
           f"({words.md(words.method_short(r.get('method') or '?'))}) made the classifier say *{words.md(name)}* for "
           f"{words.flip_rate(_generated(r))} of other classes' images; from real images of the class: {words.flip_rate(r.get('located_real'))}; "
           f"from random places: {controls_text(r)}")
    best = (r.get("methods") or {}).get(r.get("method")) or {}
    if best.get("super_stimulus"):
        out += " · it moves images although nothing in the class's real images does: a super-stimulus, not a dataset bias"
    return out


def class_line(name: str, d: dict[str, Any], biased: bool) -> str:
    bits = [f"**{words.md(name)}**" + (" · :violet[**the class with the planted cue**]" if biased else "")]
    if d.get("accuracy") is not None:
        bits.append(f"the classifier gets {d['accuracy']:.0%} of its {d.get('n_images')} folder images right")
    if (d.get("cue") or {}).get("with_cue") is not None:
        bits.append(f"{d['cue']['with_cue']:.0%} of them carry the cue")
    return " · ".join(bits)


def gen_caption(r: dict[str, Any]) -> str:
    p = "-" if r.get("p_target") is None else f"{r['p_target']:.2f}"
    return f"s{r['seed']} · p {p}" + (f" · {r['cue']:.3f}" if "cue" in r else "")


def stamp(row: dict[str, Any]) -> str:
    return " · cue" if row.get("cue", 0) > 0 else ""


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
                           key="whole.html", on_click="ignore", icon=":material/download:", width="stretch",
                           help="One self-contained page with every image: open it in a browser or send it to someone.")
    c2.download_button("Report folder (ZIP)", data=lambda: zip_folder(folder), file_name=f"bias-audit-{folder.name}.zip",
                       mime="application/zip", key="whole.zip", on_click="ignore", icon=":material/folder_zip:", width="stretch",
                       help="report.json with every number, report.html, and every image.")


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file() and not f.is_symlink():
                zf.write(f, f.relative_to(folder).as_posix())
    return buf.getvalue()
