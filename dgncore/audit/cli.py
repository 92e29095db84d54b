"""The ``audit`` command line: arguments, the run, and a summary printed for a person."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dgncore.audit.intervention import InterventionConfig
from dgncore.audit.methods import (
    AUDIT_METHODS,
    DEFAULT_METHODS,
    parse_methods,
    parse_seeds,
)
from dgncore.audit.pipeline import AuditProgress, audit
from dgncore.audit.report import percent_text
from dgncore.errors import InputError


def register_cli(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    p.description = "Bias audit: generated images of each class beside dataset samples and exemplars; a report folder with report.html."
    p.add_argument("--model", help="as for generate (efficientnet_lite0, NAME.pt + NAME.json, ...), or a built-in one: planted, planted-control, "
                   "planted-KIND[@RATE|-control] with KIND stamp, stripes, sepia, sticker or invisible")
    p.add_argument("--weights", help="weights for --model")
    p.add_argument("--device", default="auto")
    p.add_argument("--builtin", action="store_true", help="audit the built-in model with a planted shortcut (= --model planted)")
    p.add_argument("--dataset", help="ImageFolder of samples: DIR/<class>/<image> (default for the built-in model: its sample folder)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--classes", help="classes to audit: a comma list of names or indices, or all (default: the dataset's classes)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {', '.join(AUDIT_METHODS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument("--k", type=int, default=1, help="images per class, method and seed")
    p.add_argument("--steps", type=int, help="optimisation steps (default: each method's preset)")
    p.add_argument("--early-stop", type=float, help="stop an image once its target probability reaches this (default: the preset's, 0.99; 0 = never)")
    p.add_argument("--samples", type=int, default=6, help="dataset samples shown per class")
    p.add_argument("--exemplars", type=int, default=4, help="top/bottom exemplars shown per class")
    p.add_argument("--photos", action=argparse.BooleanOptionalAction, default=True,
                   help="write images made from the dataset's photos (samples, exemplars, pasted examples); --no-photos: generated images and figures only")
    p.add_argument("--format", choices=("png", "webp"), default="png", help="generated images and pictures as PNG, or lossy WebP (a compact report; scored as saved)")
    p.add_argument("--checkpoint", help="decoder checkpoint (.safetensors) for the pretrained method")
    p.add_argument("--force", action="store_true", help="regenerate images even if the same ones are on disk")
    g = p.add_argument_group("dataset prior", "a decoder trained on the dataset's own images, for the pretrained method")
    g.add_argument("--train-prior", action="store_true", help="train (or take from the cache) a decoder on the --dataset's images at the model's input size")
    g.add_argument("--prior-steps", type=int, help="training steps of the prior (default: dgncore.prior.dataset.DEFAULT_STEPS)")
    g = p.add_argument_group("confirmation by intervention", "paste each class's class-carrying patch onto other classes' images")
    g.add_argument("--intervene", action=argparse.BooleanOptionalAction, default=True, help="rank the classes by intervention (needs --dataset; default on)")
    g.add_argument("--patch", type=float, default=InterventionConfig.patch, help="patch side as a share of the image side")
    g.add_argument("--locate", choices=("occlusion", "gradxinput"), default=InterventionConfig.locate, help="how the patch is found")
    g.add_argument("--paste-images", type=int, default=InterventionConfig.images, help="other classes' images each patch is pasted onto")
    g.add_argument("--controls", type=int, default=InterventionConfig.controls, help="control patches of each kind per class")
    g.add_argument("--transplants", default=",".join(InterventionConfig.kinds), help="what is moved onto other images: patch, texture, colour (comma list)")
    return _cmd


def _cmd(args: argparse.Namespace) -> int:
    from dgncore.audit import planted

    seeds = parse_seeds(args.seeds)
    methods = parse_methods(args.methods)
    if args.steps is not None and args.steps < 1:
        raise InputError("steps must be at least 1")
    model = "planted" if args.builtin else args.model
    if not model:
        raise InputError("give --model (or --builtin for the built-in planted-shortcut model)")
    builtin = planted.is_builtin(model)
    if not builtin and not args.dataset:
        print("note: no --dataset: the report shows generated images only", file=sys.stderr)
    intervention = None
    if args.intervene and (args.dataset or builtin):
        kinds = tuple(k.strip() for k in args.transplants.split(",") if k.strip())
        intervention = InterventionConfig(patch=args.patch, locate=args.locate, images=args.paste_images, controls=args.controls, kinds=kinds)
        intervention.validate()

    def progress(p: AuditProgress) -> None:
        left = f", ~{_duration(p.phase_left_s)} left" if p.phase_left_s is not None else ""
        print(f"\r[{p.phase_no}/{p.phases}] {p.stage[:70]}: {p.done}/{p.total}{left}        ", end="", file=sys.stderr, flush=True)

    from dgncore.limits import torchscript_allowed

    report = audit(model, args.out, dataset=args.dataset, train_prior=args.train_prior, prior_steps=args.prior_steps, intervention=intervention,
                   weights=args.weights, device=args.device, allow_torchscript=torchscript_allowed(), progress=progress, classes=args.classes, methods=methods, k=args.k, seeds=seeds,
                   steps=args.steps, early_stop=args.early_stop, samples=args.samples, exemplars=args.exemplars, checkpoint=args.checkpoint,
                   reuse=not args.force, photos=args.photos, image_format=args.format)
    print("", file=sys.stderr)
    _print_summary(report)
    print(Path(args.out) / "report.html")
    return 0


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _print_summary(report: dict[str, Any]) -> None:
    for m, why in report.get("skipped_methods", {}).items():
        print(f"skipped {m}: {why}")
    if report.get("prior"):
        pr = report["prior"]
        print(f"dataset prior: {pr['checkpoint']} ({pr['steps']} steps{', cached' if pr['cached'] else ''})")
    if report.get("intervention_skipped"):
        print(f"intervention skipped: {report['intervention_skipped']}")
    _print_intervention(report)
    cue = report.get("cue")
    if not cue:
        for m, per_class in report["generated"].items():
            for c, rows in per_class.items():
                ps = [r["p_target"] for r in rows if r.get("p_target") is not None]
                print(f"{m:<11} {c[:24]:<24} p_target mean {np.mean(ps):.3f}" if ps else f"{m:<11} {c[:24]}")
        return
    classes = report["classes"]
    width = max(10, *(len(c) for c in classes))
    print(f"cue score ({cue['name']}), mean ± sd over seeds {report['seeds']}:")
    print(f"{'source':<11}" + "".join(f"{c[:width]:>{width + 12}}" for c in classes) + "   verdict")
    for m, entry in cue["methods"].items():
        cells = "".join(f"{entry['summary'][c]['mean']:>{width + 3}.4f} ± {entry['summary'][c]['sd']:.4f}" for c in classes)
        v = entry.get("verdict")
        verdict = f"{'PASS' if v['pass'] else 'FAIL'} ({v['passes']}/{v['seeds']})" if v else ""
        print(f"{m:<11}{cells}   {verdict}")
    if cue.get("dataset"):
        cells = "".join(f"{cue['dataset'][c]['mean']:>{width + 3}.4f} ({cue['dataset'][c]['with_cue']:>4.0%})" if c in cue["dataset"] else " " * (width + 12) for c in classes)
        print(f"{'dataset':<11}{cells}")
    dc = report.get("dataset_classes") or {}
    shares = {c: dc[c]["top_other_classes_with_cue"] for c in classes if "top_other_classes_with_cue" in dc.get(c, {})}
    if shares:
        print("exemplars: share of each class's most class-like images of OTHER classes that carry the cue: "
              + ", ".join(f"{c} {v:.0%}" for c, v in shares.items()))
    dx = report.get("decoder_expressibility")
    if dx:
        print(f"decoder expressibility: alpha fitted to stamped images gives cue {np.mean(dx['cue_of_reconstructions']):.4f} "
              f"(targets {np.mean(dx['cue_of_targets']):.4f}, MSE {dx['mse']:.4f})")
    b = report.get("builtin")
    if b and b.get("shortcut_evidence"):
        ev = b["shortcut_evidence"]
        print(f"shortcut evidence: stamp flips {ev['flip_to_biased']:.1%} of other classes' images to {ev['biased_class']}; "
              f"{ev['biased_class']} accuracy {ev['biased_accuracy_with_cue']:.1%} with / {ev['biased_accuracy_without_cue']:.1%} without its stamp")


def _print_intervention(report: dict[str, Any]) -> None:
    iv = report.get("intervention")
    if not iv:
        return
    print(f"intervention ({iv['patch_side']} px patches; {', '.join(iv.get('kinds') or ['patch'])}; methods {', '.join(iv['methods'])}), top suspects first:")
    width = max(12, *(len(c) for c in iv["ranking"]))
    print(f"{'rank':>4}  {'class'[:width]:<{width}}  {'verdict':<18}  {'kind':<7}  {'method':<10}  {'G: generated':<16}  {'L: own real':<16}  {'ctrl real':<16}  ctrl random")
    for c in iv["ranking"]:
        r = iv["classes"][c]
        g = r["methods"].get(r.get("method") or "", None)
        ctrl = r.get("controls") or {}
        print(f"{r['rank']:>4}  {c[:width]:<{width}}  {r['verdict']:<18}  {(r.get('kind') or '-'):<7}  {(r.get('method') or '-'):<10}  {percent_text(g):<16}  {percent_text(r.get('located_real')):<16}  "
              f"{percent_text(ctrl.get('real')):<16}  {percent_text(ctrl.get('random'))}")
