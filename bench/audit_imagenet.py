"""Whole-model audit of EfficientNet-Lite0 on a folder of ImageNet photos named
``<wnid>_<name>.JPEG`` (one or more per class, e.g. ``../shared/imagenet-samples``):
generated images, intervention ranking, report folder.

    python bench/audit_imagenet.py --photos ../shared/imagenet-samples --out bench/results/audit-lite0

The photos are never copied: the ImageFolder the audit reads (``DIR/<wnid>/<photo>``) is
made of symbolic links under the user cache dir. Classes: known ImageNet shortcuts
(watermarks and text, fingers, mountains, water, ...; docs/evaluation) plus
``--controls`` classes drawn at random (seed 0) from those with a photo.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgncore.audit.cli import _print_summary
from dgncore.audit.intervention import InterventionConfig
from dgncore.audit.pipeline import AuditProgress, audit

#: ImageNet classes with a known or reported shortcut (evaluation.md; Singla & Feizi 2022; the paper)
SUSPECTS = ["tench", "hummingbird", "koala", "ibex", "otter", "Band Aid", "carton", "cradle", "crib", "harmonica", "monitor", "muzzle",
            "safe", "ski", "web site"]
#: classes whose photos often share a context (hands, water, snow, people, babies, labels,
#: sky, ice), chosen before the 2026-12-07 run as further suspects
CONTEXT = ["lipstick", "ballpoint", "screwdriver", "syringe", "cellular telephone",  # held in a hand
           "snorkel", "paddle", "canoe", "scuba diver",  # water
           "dogsled", "snowmobile",  # snow
           "bow tie", "sunglasses", "seat belt", "jersey",  # worn by a person
           "bib", "bassinet", "diaper",  # babies
           "packet", "pill bottle",  # printed labels
           "kite", "puck"]  # sky, an ice rink


def link_folder(photos: Path, dest: Path) -> Path:
    """``dest/<wnid>/<photo>`` -> symbolic links to ``photos/<wnid>_*.JPEG``."""
    for p in sorted(photos.iterdir()):
        if p.suffix.lower() not in (".jpeg", ".jpg", ".png") or "_" not in p.name:
            continue
        link = dest / p.name.split("_", 1)[0] / p.name
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(p.resolve())
    return dest


def _no_paths(value: Any) -> Any:
    """``value`` with every absolute path of this machine cut down to its file name."""
    if isinstance(value, dict):
        return {k: _no_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_paths(v) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return Path(value).name
    return value


def ship(report_dir: Path, dest: Path, dataset_name: str) -> None:
    """Copy a report made without photos, as WebP, for the dashboard: ``report.json`` (the
    dataset named in words, no path of this machine) and the images it names; no HTML (the
    page draws it on demand) and no per-image records. ``dest`` must be absent or an
    earlier shipped report (it is replaced)."""
    import json
    import shutil

    from dgncore.audit.run import report_files
    from dgncore.data import write_json

    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    rels = report_files(report)
    if report.get("photos") is not False or not all(r.endswith(".webp") for r in rels):
        raise SystemExit("only a report made without photos and with WebP images may ship (run with --format webp, and without --write-photos)")
    if dest.exists() and not (dest / "report.json").is_file():
        raise SystemExit(f"{dest} is not an earlier shipped report: give a new folder")
    report.pop("index", None)
    report = _no_paths(report)
    report["dataset"] = dataset_name
    shutil.rmtree(dest, ignore_errors=True)
    for rel in rels:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report_dir / rel, dest / rel)
    write_json(report, dest / "report.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, help="folder of <wnid>_<name>.JPEG photos")
    ap.add_argument("--out", default="bench/results/audit-lite0")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--controls", type=int, default=5, help="random control classes (with a photo) added to the suspects")
    ap.add_argument("--context", action="store_true", help="add the context suspects (CONTEXT) to the known ones")
    ap.add_argument("--classes", help="audit these classes only (comma list of names), e.g. the top suspects of a first run")
    ap.add_argument("--write-photos", action=argparse.BooleanOptionalAction, default=False,
                    help="write images made from the photos (samples, exemplars, pasted examples) into the report; off: a report that may ship")
    ap.add_argument("--methods", default="untrained")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--images", type=int, default=32, help="other classes' photos each patch is pasted onto (1000: all of them)")
    ap.add_argument("--grid", type=int, default=5, help="occlusion positions per axis")
    ap.add_argument("--control-patches", type=int, default=3, help="control patches of each kind per class")
    ap.add_argument("--format", choices=("png", "webp"), default="png", help="generated images and pictures as PNG, or as WebP (a report to ship)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ship", help="then copy the report (made with --format webp, without photos) here: dashboard/examples/audit-lite0")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from timm.data import ImageNetInfo

    from dgncore.prior.dataset import cache_dir

    photos = Path(args.photos)
    folder = link_folder(photos, cache_dir().parent / "imagenet-folder" / photos.resolve().name)
    info = ImageNetInfo()
    index_of = {info.index_to_label_name(i): i for i in range(1000)}
    have = sorted(index_of[p.name] for p in folder.iterdir() if p.is_dir() and p.name in index_of)
    from dgncore.models.classifiers import load_classifier

    clf = load_classifier(args.model)
    if args.classes:
        classes = [clf.class_index(c.strip()) for c in args.classes.split(",") if c.strip()]
        controls: list[int] = []
    else:
        suspects = [clf.class_index(c) for c in SUSPECTS + (CONTEXT if args.context else [])]
        rng = np.random.default_rng(0)
        pool = [i for i in have if i not in suspects]
        controls = sorted(int(i) for i in rng.choice(pool, size=args.controls, replace=False))
        classes = suspects + controls
    print("classes:", ", ".join(f"{clf.classes[i]} ({i})" for i in classes), file=sys.stderr)
    t0 = time.perf_counter()

    def progress(p: AuditProgress) -> None:
        left = f" ~{p.phase_left_s:.0f} s left" if p.phase_left_s is not None else ""
        print(f"\r[{p.phase_no}/{p.phases}] {p.stage[:60]} {p.done}/{p.total}{left}   ", end="", file=sys.stderr, flush=True)

    rep = audit(clf, args.out, dataset=folder, classes=[str(i) for i in classes], methods=args.methods.split(","),
                seeds=[int(s) for s in args.seeds.split(",")], samples=1, exemplars=4, model_name=args.model, photos=args.write_photos, image_format=args.format,
                intervention=InterventionConfig(images=args.images, grid=args.grid, controls=args.control_patches), progress=progress)
    print("", file=sys.stderr)
    _print_summary(rep)
    print(f"{time.perf_counter() - t0:.0f} s; controls: {', '.join(clf.classes[i] for i in controls)}; report: {Path(args.out) / 'report.html'}")
    if args.ship:
        ship(Path(args.out), Path(args.ship), f"{photos.resolve().name} ({sum(1 for _ in folder.glob('*/*'))} ImageNet photos; not shipped)")


if __name__ == "__main__":
    main()
