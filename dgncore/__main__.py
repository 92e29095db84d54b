"""Command line: ``python -m dgncore {generate,gallery,layers,classes,pretrain,...}``.

User errors (bad names, files, numbers) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from dgncore.errors import InputError, one_line

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        raise InputError(f"{self.prog}: {message}")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0", help="efficientnet_lite0 (default), efficientnet_lite1/2, vgg16, a torchvision/timm name, or NAME.pt (TorchScript + NAME.json)")
    p.add_argument("--weights", help="weights for --model: .safetensors or a state dict (read with weights_only)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")


def _method_args(p: argparse.ArgumentParser) -> None:
    from dgncore.drawing.registry import DEFAULT_METHOD, METHODS

    others = ", ".join(m for m in METHODS if m != DEFAULT_METHOD)
    p.add_argument("--method", default=DEFAULT_METHOD, help=f"{DEFAULT_METHOD} (default), {others}, or a paper preset: untrained-paper, pretrained-paper")
    p.add_argument("--steps", type=int, help="optimisation steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--penalty", type=float, help="lambda: weight on the other classes")
    p.add_argument("--reg", dest="reg_weight", type=float, help="weight of the regulariser R")
    p.add_argument("--noise", dest="noise_sigma", type=float, help="sigma of the feature noise")
    p.add_argument("--early-stop", type=float, help="stop a target once its probability reaches this (0 = never)")
    p.add_argument("--final", choices=["last", "median"], help="final image: last, or median of recent images")
    p.add_argument("--size", type=int, help="output image size in pixels")
    p.add_argument("--width", type=float, help="generator channel width multiplier")
    p.add_argument("--checkpoint", help="decoder checkpoint (.safetensors) for the pretrained method")
    p.add_argument("--restarts", type=int, help="independent starts per target; the best-scoring one is kept")
    p.add_argument("--init-jitter", dest="init_jitter", type=float, help="pretrained: spread of alpha's seeded start around the mean code")
    p.add_argument("--prune-after", dest="prune_after", type=int, help="with restarts: after this many steps only each target's best start goes on (0: never)")
    p.add_argument("--views", type=int, help="transformed views of each image the classifier sees per step (with transforms)")
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=["constant", "cosine"], help="learning rate over the run (cosine: falls from --lr towards 0 by the last step)")


def _preset(args: argparse.Namespace):
    from dgncore.drawing.registry import make_preset

    names = ("lr", "penalty", "reg_weight", "noise_sigma", "early_stop", "final", "checkpoint", "restarts", "init_jitter", "prune_after", "views", "lr_schedule")
    given: dict[str, Any] = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    return make_preset(args.method, steps=args.steps, size=args.size, width=args.width, **given)


def _classifier(args: argparse.Namespace):
    from dgncore.limits import torchscript_allowed
    from dgncore.models.classifiers import load_classifier

    return load_classifier(args.model, weights=args.weights, device=args.device, allow_torchscript=torchscript_allowed())


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)


def cmd_generate(args: argparse.Namespace) -> int:
    from dgncore.runs import generate, parse_targets

    if args.seed < 0:
        raise InputError("seed must not be negative")
    preset = _preset(args)
    clf = _classifier(args)
    targets = parse_targets(args.target, clf)
    out = Path(args.out)
    bar = _bar(preset.steps, f"{preset.method} x{len(targets)}")

    def progress(p) -> None:
        bar.n = p.step
        last = p.checks[-1][1] if p.checks else []
        bar.set_postfix_str(" ".join("-" if x != x else f"{x:.2f}" for x in last[:4]))
        bar.refresh()

    records = generate(clf, targets, preset, out, seed=args.seed, model=args.model, progress=progress, reuse=not args.force,
                       image_format=args.format)
    bar.close()
    for r in records:
        p = "-" if r.get("p_target") is None else f"{r['p_target']:.3f}"
        extra = f"rank {r['rank']}" if r.get("rank") else f"percentile {r.get('percentile')}"
        print(f"{out / r['png']}  {r['target_label']}: p={p} {extra}  {r['seconds']:.1f}s{'  (cached)' if r.get('cached') else ''}")
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dgncore.runs import class_targets, draw_classes, parse_shard

    shard = parse_shard(args.shard)
    preset = _preset(args)
    clf = _classifier(args)
    targets = class_targets(clf, args.classes)
    bar = tqdm(desc=f"gallery {preset.method} shard {shard[0]}/{shard[1]}", unit="img", file=sys.stderr, dynamic_ncols=True)

    def reached(recs: list) -> int:
        return sum(1 for r in recs if (r.get("p_target") or 0) >= 0.9)

    def progress(done: int, total: int, recs: list) -> None:
        bar.total = total
        bar.n = done
        if recs:
            bar.set_postfix_str(f"last batch {reached(recs)}/{len(recs)} p>=0.9")
        bar.refresh()

    t0 = time.perf_counter()
    made = draw_classes(clf, targets, preset, Path(args.out), seed=args.seed, model=args.model, batch=args.batch, shard=shard, progress=progress,
                   image_format=args.format)
    seconds = time.perf_counter() - t0
    bar.close()
    # the figures a batch run is judged by (e.g. all 1,000 classes on a GPU): wall time, images/s, how many reached p 0.9
    print(f"made {len(made)} images in {seconds:.1f} s ({len(made) / max(seconds, 1e-9):.2f} images/s, {clf.device.type}, "
          f"batch {args.batch}); p_target >= 0.9 on the saved image: {reached(made)}/{len(made)}; already on disk: {bar.total - len(made)}",
          file=sys.stderr)
    print(f"{Path(args.out) / 'index.json'}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    clf = _classifier(args)
    layers = clf.layers()
    if args.json:
        print(json.dumps([{"name": l.name, "kind": l.kind, "shape": list(l.shape), "channels": l.channels} for l in layers], indent=1))
        return 0
    width = max((len(l.name) for l in layers), default=10)
    print(f"{'layer':<{width}}  {'kind':<20} {'channels':>8}  shape")
    for l in layers:
        print(f"{l.name:<{width}}  {l.kind:<20} {l.channels:>8}  {'x'.join(map(str, l.shape))}")
    return 0


def cmd_classes(args: argparse.Namespace) -> int:
    clf = _classifier(args)
    query = (args.search or "").lower()
    for i, d in enumerate(clf.descriptions):
        if query in d.lower():
            print(f"{i:>5}  {d}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from dgncore.data import load_image
    from dgncore.drawing.objectives import parse_target
    from dgncore.results import score_image

    clf = _classifier(args)
    target = parse_target(args.target, clf)
    print(json.dumps(score_image(clf, load_image(args.image), target), indent=1))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from dgncore.prior.training import run_pretrain

    return run_pretrain(args) or 0


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["png", "webp"], default="png",
                   help="png (default), or webp: lossy, about a fifth of the bytes, scored on the WebP as saved (the dashboard's examples)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dgncore", description="DGN Explorer: see what a trained image classifier has learned (Despraz et al. 2017).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    p = sub.add_parser("generate", help="make images that maximise targets (one batch)")
    _model_args(p)
    _method_args(p)
    p.add_argument("--target", action="append", required=True, help="class:NAME|INDEX, classes:A+B*0.5, filter:LAYER:K, neuron:LAYER:K:Y:X, group:LAYER:K1,K2 (repeatable)")
    p.add_argument("--out", default="results", help="output folder (DIR/<slug>.png and .json)")
    p.add_argument("--force", action="store_true", help="recompute even if the same result is on disk")
    _format_arg(p)
    commands["generate"] = cmd_generate

    p = sub.add_parser("gallery", help="one image per class, resumable and shardable")
    _model_args(p)
    _method_args(p)
    p.add_argument("--classes", default="all", help="all, or a list: 0-9,tench,goldfish")
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=8, help="targets optimised together")
    p.add_argument("--shard", help="i/n: this machine does every n-th class starting at i (1-based)")
    _format_arg(p)
    commands["gallery"] = cmd_gallery

    p = sub.add_parser("layers", help="list the classifier's layers (for filter targets)")
    _model_args(p)
    p.add_argument("--json", action="store_true")
    commands["layers"] = cmd_layers

    p = sub.add_parser("classes", help="list or search class names")
    _model_args(p)
    p.add_argument("search", nargs="?", help="substring to search for")
    commands["classes"] = cmd_classes

    p = sub.add_parser("score", help="score an image file for a target")
    _model_args(p)
    p.add_argument("--image", required=True)
    p.add_argument("--target", required=True)
    commands["score"] = cmd_score

    try:
        from dgncore.prior.training import add_pretrain_args
    except ImportError:  # pragma: no cover - pretrain is part of the package
        add_pretrain_args = None
    if add_pretrain_args is not None:
        p = sub.add_parser("pretrain", help="train the denoising autoencoder whose decoder the pretrained method uses")
        add_pretrain_args(p)
        commands["pretrain"] = _pretrain

    for name, register in _extra_commands():
        p = sub.add_parser(name)
        commands[name] = register(p)

    parser.set_defaults(_commands=commands)
    return parser


def _extra_commands() -> list[tuple[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]]]:
    """Subcommands that live with their feature (audit, worker): each module offers
    ``register_cli(parser) -> handler``."""
    import importlib

    out = []
    for name, module in (("audit", ".audit.cli"), ("planted", ".audit.planted"), ("worker", ".serving.worker"), ("photo-stats", ".prior.photostats")):
        try:
            mod = importlib.import_module(module, __package__)
        except ImportError:
            continue
        if hasattr(mod, "register_cli"):
            out.append((name, mod.register_cli))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:  # before build_parser, whose subcommands load torch
        from dgncore.serving.job_process import quiet_openmp

        quiet_openmp()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return args._commands[args.command](args)
    except InputError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
