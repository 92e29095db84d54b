"""The "Audit the whole model" tab of the bias-audit page (``dashboard/views/bias_audit.py``
calls :func:`render`), which leads the page.

It runs :func:`dgncore.audit.pipeline.audit` on every class of a model (or a chosen list): a built-in
model with a planted shortcut (the demo, several cues and strengths), or the sidebar's
model on a folder or ZIP of its classes' images. Each class is tested by intervention
(:mod:`dgncore.audit.intervention`: pieces of the generated pictures pasted onto other classes'
images), and the report (drawn by :mod:`dashboard.audit_report`) leads with the classes
ranked by that test, top suspects first:
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
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import flow, page, runner, samples, state, words
from dashboard.audit_report import CURRENT, saved_report, saved_select, show_report
from dgncore.drawing.registry import AUDIT_DEFAULT_METHODS
from dgncore.errors import InputError
from dgncore.serving.status import QueueUnavailable

DEMO = "A built-in model with a planted shortcut (the demo)"
READY = "EfficientNet-Lite0 on ImageNet photos (ready-made)"
OWN = "The sidebar's model on your images"
#: the shipped whole-model audit of the default classifier (``bench/audit_imagenet.py --ship``)
READY_FOLDER = "audit-lite0"
JOB = "audit.job"  # the session's last audit job (to say how it ended)


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
    ready = ready_folder()
    options = [DEMO] + ([READY] if ready is not None else []) + ([OWN] if samples.sources() else [])
    what = state.widget(
        st.radio, "What to audit", "whole.of", DEMO, "audit_of", options=options, horizontal=True,
        help="The demo audits a small built-in network trained with a shortcut planted on purpose, so you can see what a found shortcut "
             "looks like; the ready-made audit is the default classifier's, run once on real photos and shown from disk; the last choice "
             "audits the model chosen in the sidebar with images of its classes.") if len(options) > 1 else DEMO
    if what == READY and ready is not None:
        ready_made(ready)
        return
    own = what == OWN
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
    try:
        job = runner.running_audit(spec) if spec is not None else None
    except QueueUnavailable as e:
        page.error(f"{e}: try again in a minute")
        return
    if st.button("Run the audit", type="primary", disabled=spec is None or job is not None, key="audit.go") and spec is not None and job is None:
        try:
            job = runner.submit_audit(spec)
        except (InputError, QueueUnavailable) as e:
            page.error(e)
    if job is not None:
        st.session_state[JOB] = job
        follow(spec)  # a fragment: it reruns the page once the job has ended
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


# --------------------------------------------------------------------------- the ready-made audit


def ready_folder() -> Path | None:
    """The shipped audit's folder, if this copy of the app has it."""
    from dashboard.showcase import examples_root

    folder = examples_root() / READY_FOLDER
    return folder if (folder / "report.json").is_file() else None


def ready_made(folder: Path) -> None:
    """The default classifier's whole-model audit, made once (no photo in it) and shown from disk."""
    report = saved_report(folder)
    if report is None:
        return
    iv = report.get("intervention") or {}
    found = [c for c in iv.get("ranking", []) if iv["classes"][c]["verdict"] != "none"]
    cfg = iv.get("config") or {}
    moved = ", ".join(words.PASTED.get(k, k) for k in iv.get("kinds") or ["patch"])
    page.intro(
        f"**A real model, audited once.** {words.md(report['model'])}, the default classifier, audited on "
        f"{words.md(report.get('dataset') or 'ImageNet photos')} for {len(report['classes'])} classes: classes with a shortcut "
        "reported in the literature (fingers, watermarks, mountains, water), classes whose photos often share a context "
        "(a hand, water, snow, a person, a baby, a label), and classes drawn at random as controls. Each class was drawn with "
        f"{words.plural(len(report['seeds']), 'seed')}; {moved} of each drawing were moved onto {cfg.get('images', '?')} photos "
        "of other classes, beside the same from the class's own photo and from random places. "
        + (f"Suspects: {', '.join(words.md(c) for c in found)}. " if found else "No class came out as a suspect. ")
        + "The photos themselves are not shown (their terms keep them out of this app); every figure was measured on them.")
    show_report(report, folder, shipped=True)


# --------------------------------------------------------------------------- the built-in models in words


def builtin_options() -> dict[str, str]:
    """Every built-in planted model, by name, in plain words: each cue at each strength, and its control."""
    from dgncore.audit.planted import (
        BIASED_CLASS,
        CUE_KINDS,
        CUE_RATE_BIASED,
        CUE_RATE_CONTROL,
        STRENGTHS,
    )

    what = {"stamp": "magenta stamp", "stripes": "faint stripes", "sepia": "sepia tone", "sticker": "yellow sticker", "invisible": "invisible pattern"}
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
        from dgncore.prior.dataset import BUDGET_SECONDS, prior_fits

        fits = prior_fits(lim.job_timeout)
        prior = state.widget(st.checkbox, "Train a prior on this data (minutes, the first time)", f"whole.prior.{'demo' if demo else 'own'}", fits,
                             "audit_prior",
                             help="Train a small picture decoder on the dataset's own images and use it for the image-prior method, so its "
                                  f"drawings look like the data. The first time for a folder it takes up to {BUDGET_SECONDS / 60:.0f} minutes "
                                  "(the progress box shows the time left); it is then kept on disk, and a stopped training goes on where it "
                                  "stopped." + ("" if fits else f" Off at first here: this server stops a job after {lim.job_timeout} s, "
                                                "which leaves too little time for the training and the audit together."))
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
def follow(spec) -> None:
    """The audit's place in the queue, or its step and the seconds left in it, redrawn
    until it ends; then the page reruns to show the report."""
    try:
        job = runner.running_audit(spec)
        if job is None:  # ended (or expired from the queue)
            st.rerun()
        s = job.status()
    except QueueUnavailable as e:  # the audit is kept there: say what the page waits for
        st.status(f"Waiting for the job queue: {e}", state="running")
        return
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
        except (InputError, QueueUnavailable) as e:
            page.error(e)


def outcome(out_dir: str) -> None:
    """How this session's last audit of ``out_dir`` ended, when it did not end well."""
    job = st.session_state.get(JOB)
    if job is None:
        return
    try:
        s = job.status()
    except (InputError, QueueUnavailable):
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


# --------------------------------------------------------------------------- the report


