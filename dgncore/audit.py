"""Bias audit: generated images of each class beside real images of that class.

For every audited class the audit makes ``k`` images per method and seed (the paper's
pretrained and untrained generators, and the pixel baseline), puts them beside dataset
samples of the class with the classifier's predictions and the folder's exemplars (the
real images that score highest and lowest for the class, and the most class-like images
of *other* classes), and writes a report folder::

    OUT/report.html     self-contained (images embedded), to open or share
    OUT/report.json     every figure in the page
    OUT/generated/<method>/seed<S>/<class>_k<J>.png (+ .json, scored on the saved PNG)
    OUT/samples/<class>/<image>.png   thumbnails of the dataset samples shown

A picture proves nothing by itself (Geirhos et al. 2023), so the audit can be given a
*cue detector* - a function that measures a suspected shortcut in any image - and then
reports the cue's strength in each class's generated images against the dataset. The
built-in case (:mod:`dgncore.planted`) has a known planted shortcut; the audit passes
for a method when, at every seed, the biased class's generated images carry the cue
(see :data:`CRITERION`).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import math
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from .classifiers import Classifier
from .data import IMAGE_SUFFIXES, load_image, save_png, write_json
from .errors import InputError
from .objectives import Target, parse_target

from .intervention import InterventionConfig

if TYPE_CHECKING:
    from .exemplars import Exemplar

DEFAULT_METHODS: tuple[str, ...] = ("pretrained", "untrained", "pixel")
#: every method an audit can draw with
AUDIT_METHODS: tuple[str, ...] = ("natural", "pretrained", "untrained", "pixel", "fourier")
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
#: the built-in models with a planted shortcut (:mod:`dgncore.planted`)
BUILTIN_MODELS: tuple[str, ...] = ("planted", "planted-control")  # and the names planted.is_builtin accepts
MAX_AUTO_CLASSES = 20
THUMB = 128
#: The pass criterion for a planted cue, fixed before the measurement. Per seed: the
#: biased class's mean cue score must be at least RATIO times the highest mean of any
#: other class AND exceed it by MARGIN (a fraction of the image area); a method passes
#: when every seed passes.
RATIO = 2.0
MARGIN = 0.005
CRITERION = (
    f"per seed: cue(biased class) >= {RATIO:g} x max cue(other class) and cue(biased) - max cue(other) >= {MARGIN:g} "
    "(cue = the cue detector's score, averaged over the class's generated images of that seed); "
    "a method passes when all seeds pass"
)

ProgressFn = Callable[[str, int, int], None]
CueFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- dataset checks


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


@dataclass(frozen=True)
class DatasetMatch:
    """An ImageFolder checked against a model: folder name -> class index."""

    root: Path
    folders: list[str]
    class_of: dict[str, int]
    files: dict[str, list[Path]]


def check_dataset(folder: str | Path, classifier: Classifier) -> DatasetMatch:
    """Validate an ImageFolder (``DIR/<class>/<image>``) for ``classifier``: it exists,
    has class sub-folders, each holds image files, and each folder name is one of the
    model's classes (name, case and ``_``/``-`` ignored; a class index; or an ImageNet
    WordNet id for 1000-class models). Anything else is an InputError naming the problem."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"dataset folder {str(root)[:120]} does not exist")
    if not root.is_dir():
        raise InputError(f"dataset {root.name[:80]} is not a folder (expected DIR/<class>/<image>.png)")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        what = f"{len(loose)} images but no class sub-folders" if loose else "no class sub-folders"
        raise InputError(f"dataset folder {root.name[:80]} has {what} (expected ImageFolder layout: DIR/<class>/<image>.png)")
    files: dict[str, list[Path]] = {}
    for sub in subs:
        entries = [p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")]
        imgs = sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES)
        if not imgs:
            if entries:
                raise InputError(f"class folder {sub.name[:60]!r} in {root.name[:60]} holds no images: {len(entries)} other file(s), e.g. {entries[0].name[:40]!r}")
            raise InputError(f"class folder {sub.name[:60]!r} in {root.name[:60]} is empty")
        files[sub.name] = imgs
    lookup: dict[str, int] = {}
    for names in (classifier.descriptions, classifier.classes):
        for i, d in enumerate(names):
            for syn in d.split(",") if names is classifier.descriptions else [d]:
                lookup.setdefault(_norm(syn), i)
    for i, c in enumerate(classifier.classes):  # the short name wins over another class's synonym
        lookup[_norm(c)] = i
    wnids = _wnids() if classifier.n_classes == 1000 else {}
    class_of: dict[str, int] = {}
    unmatched = []
    for name in files:
        key = _norm(name)
        if key in lookup:
            class_of[name] = lookup[key]
        elif key.isdigit() and int(key) < classifier.n_classes:
            class_of[name] = int(key)
        elif name in wnids:
            class_of[name] = wnids[name]
        else:
            unmatched.append(name)
    if unmatched:
        shown = ", ".join(repr(n[:40]) for n in unmatched[:4]) + (f" and {len(unmatched) - 4} more" if len(unmatched) > 4 else "")
        some = ", ".join(classifier.classes[:6]) + (", ..." if classifier.n_classes > 6 else "")
        raise InputError(f"class folder(s) {shown} in {root.name[:60]} match no class of {classifier.name[:60]} (its classes: {some})")
    seen: dict[int, str] = {}
    for name, idx in class_of.items():
        if idx in seen:
            raise InputError(f"class folders {seen[idx][:40]!r} and {name[:40]!r} in {root.name[:60]} both mean class {classifier.classes[idx]!r}")
        seen[idx] = name
    return DatasetMatch(root, list(files), class_of, files)


def _wnids() -> dict[str, int]:
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return {info.index_to_label_name(i): i for i in range(1000)}
    except Exception:  # noqa: BLE001 - optional convenience
        return {}


# --------------------------------------------------------------------------- presets


#: the audit's early stop for ``pretrained`` (:func:`method_preset`), the one its figures were measured with
AUDIT_EARLY_STOP = 0.99


def method_preset(method: str, classifier: Classifier, steps: int | None = None, early_stop: float | None = None, checkpoint: str | Path | None = None):
    """The preset an audit uses for ``method``, or (None, reason) when it cannot run here.

    ``untrained`` and ``pixel`` make images at the classifier's input size (the
    untrained G at quarter width with as many stages as reach that size); ``pretrained``
    uses its decoder's 224 px (the classifier resizes). ``early_stop``: None keeps the
    preset's, and for ``pretrained`` (whose preset runs all its steps for the picture's
    sake) :data:`AUDIT_EARLY_STOP`: the audit shows the *first* image the classifier is
    sure of, i.e. the easiest route to the class, which is where a shortcut shows; pushed
    for the whole budget the images drift into saturated patterns. 0 turns it off."""
    from .api import make_preset
    from .generators import GeneratorConfig

    size = classifier.input_size
    if method == "pretrained":
        preset = make_preset("pretrained", steps=steps, checkpoint=str(checkpoint) if checkpoint else None, early_stop=AUDIT_EARLY_STOP)
        ckpt = Path(preset.checkpoint or "")
        if checkpoint and not ckpt.is_file():
            raise InputError(f"decoder checkpoint {str(ckpt)[:120]} does not exist")
        if not ckpt.is_file():
            return None, f"no decoder checkpoint at {ckpt} (train one with: python -m dgncore pretrain)"
        from .pretrain import decoder_config

        try:  # the decoder's own generator, so that the report shows what made the images
            gen = decoder_config(ckpt)
        except InputError:
            if checkpoint:
                raise InputError(f"{ckpt.name[:80]} is not a decoder written by: python -m dgncore pretrain") from None
            return None, f"{ckpt.name} is not a readable decoder file"
        preset = preset.replace(generator=gen)
    elif method == "untrained":
        stages = min(range(1, 7), key=lambda s: abs(math.log(GeneratorConfig(stages=s).native_size / max(size, 16))))
        gen = GeneratorConfig(width=0.25, stages=stages, out_size=max(16, min(size, 512)), rgb_last_stage=True)
        preset = make_preset("untrained", steps=steps, generator=gen)
    elif method in ("pixel", "fourier", "natural"):
        preset = make_preset(method, steps=steps, size=max(16, min(size, 512)))
    else:
        raise InputError(f"unknown audit method {method[:30]!r}: choose from {', '.join(AUDIT_METHODS)}")
    if early_stop is not None:
        preset = dataclasses.replace(preset, early_stop=early_stop if early_stop > 0 else None)
    preset.validate()
    return preset, None


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        try:
            seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
        except ValueError as e:
            raise InputError(f"bad seeds {text[:40]!r}: write a comma list like 0,1,2") from e
    if not seeds or len(seeds) > 20 or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise InputError("seeds must be 1-20 distinct non-negative whole numbers, e.g. 0,1,2")
    return seeds


def parse_methods(text: str | Sequence[str]) -> list[str]:
    items = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in items if m not in AUDIT_METHODS]
    if not items or bad:
        raise InputError(f"bad methods {','.join(bad)[:40] or '(none)'}: choose from {', '.join(AUDIT_METHODS)}")
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- the audit


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:50] or "class"


def _thumb(src: Path, dest: Path, size: int = THUMB) -> None:
    from .data import open_image

    im = open_image(src)
    im.thumbnail((size, size))
    save_png(np.asarray(im, dtype=np.uint8), dest)


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(a.mean()), 5), "sd": round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 5), "n": int(len(a))}


def judge_cue(per_seed: dict[str, list[float]], biased: str, seeds: Sequence[int]) -> dict[str, Any]:
    """Apply :data:`CRITERION` to ``per_seed[class][i]`` = mean cue score of that class's
    images at ``seeds[i]``."""
    rows = []
    for i, s in enumerate(seeds):
        b = per_seed[biased][i]
        others = {c: v[i] for c, v in per_seed.items() if c != biased}
        worst = max(others, key=lambda c: others[c]) if others else None
        mo = others[worst] if worst else 0.0
        ok = b >= RATIO * mo and b - mo >= MARGIN
        rank = 1 + sum(v > b for v in others.values()) if b > 0 else None  # no rank among zeros
        rows.append({"seed": s, "biased": round(b, 5), "max_other": round(mo, 5), "max_other_class": worst if mo > 0 else None,
                     "ratio": round(b / mo, 2) if mo > 0 else None, "rank_of_biased": rank, "pass": bool(ok)})
    return {"per_seed": rows, "passes": sum(r["pass"] for r in rows), "seeds": len(rows), "pass": all(r["pass"] for r in rows)}


def run_audit(
    classifier: Classifier,
    out_dir: str | Path,
    dataset: str | Path | None = None,
    classes: Sequence[str | int] | str | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    k: int = 1,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    steps: int | None = None,
    early_stop: float | None = None,
    model_name: str | None = None,
    samples: int = 6,
    exemplars: int = 4,
    cue: CueFn | None = None,
    cue_name: str = "cue",
    biased_class: str | None = None,
    extra: dict[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    reuse: bool = True,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    intervention: InterventionConfig | None = None,
) -> dict[str, Any]:
    """Run an audit and write the report folder; returns the report (also in
    ``OUT/report.json``; the page is ``OUT/report.html``).

    ``classes``: names or indices (default: the dataset's classes, or all classes of a
    model with at most 20). ``cue``: images in [0, 1] -> (n,) scores; with it, the report
    has the cue score of every class's generated images per method and seed, of the
    dataset's images, and, when ``biased_class`` is given, the verdict of
    :data:`CRITERION`. ``extra`` is stored as is (e.g. shortcut evidence).
    ``checkpoint``: decoder for the pretrained method (default: the preset's).
    ``intervention``: with a dataset, test each class's generated images by pasting
    their class-carrying patch onto other classes' images (:mod:`dgncore.intervention`);
    the report then ranks the classes by it (``report["intervention"]["ranking"]``)."""
    from .api import generate
    from .exemplars import build_index
    from .optimize import MAX_BATCH

    t_start = time.perf_counter()
    out = Path(out_dir)
    model_name = model_name or classifier.name
    is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
    report_progress = progress or (lambda _s, _d, _t: None)
    if not 1 <= k <= 16:
        raise InputError("k (images per class, method and seed) must be between 1 and 16")
    if not 0 <= samples <= 64 or not 0 <= exemplars <= 32:
        raise InputError("samples must be 0-64 and exemplars 0-32 per class")
    seeds = parse_seeds(seeds)
    methods = parse_methods(methods)

    match = check_dataset(dataset, classifier) if dataset is not None else None
    targets = _audit_targets(classifier, classes, match)
    names = _labels(classifier, targets)
    if biased_class is not None and biased_class not in names:
        biased_class = None
    folder_of = {idx: name for name, idx in match.class_of.items()} if match else {}

    # presets (a method that cannot run here is reported, not fatal)
    presets: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for m in methods:
        preset, why = method_preset(m, classifier, steps, early_stop, checkpoint)
        if preset is None:
            skipped[m] = why or "unavailable"
        else:
            presets[m] = preset
    if not presets:
        raise InputError("no audit method can run here: " + "; ".join(f"{m}: {w}" for m, w in skipped.items()))

    # dataset: index (predictions + exemplars), samples, cue scores
    index = None
    dataset_info: dict[str, Any] = {}
    if match is not None:
        report_progress("indexing the dataset", 0, 1)
        index = build_index(classifier, match.root, progress=lambda d, t: report_progress("indexing the dataset", d, t), cancel=is_cancelled)
        labels = np.asarray(index.labels, dtype=object)
        pred = index.predicted
        probs = index.probabilities
        for t, name in zip(targets, names):
            c = t.units[0]
            folder = folder_of.get(c)
            entry: dict[str, Any] = {"folder": folder}
            if folder is not None:
                rows = np.nonzero(labels == folder)[0]
                entry["n_images"] = int(len(rows))
                entry["accuracy"] = round(float((pred[rows] == c).mean()), 4) if len(rows) else None
                counts = np.bincount(pred[rows], minlength=classifier.n_classes) if len(rows) else np.zeros(classifier.n_classes, int)
                entry["predicted_as"] = {classifier.classes[i]: int(counts[i]) for i in np.argsort(-counts)[:5] if counts[i] > 0}
                rng = np.random.default_rng(0)
                pick = np.sort(rng.choice(rows, size=min(samples, len(rows)), replace=False)) if len(rows) else []
                shown = []
                for i in pick:
                    rel = index.paths[i]
                    thumb = Path("samples") / _slug(folder) / f"{i:05d}_{_slug(Path(rel).stem)}.png"
                    _thumb(index.root / rel, out / thumb)
                    shown.append({"file": rel, "thumb": thumb.as_posix(), "predicted": classifier.classes[int(pred[i])],
                                  "p_predicted": round(float(probs[i, pred[i]]), 4), "p_class": round(float(probs[i, c]), 4), "correct": bool(pred[i] == c)})
                entry["samples"] = shown
            if exemplars:
                top, bottom = index.extremes(t, exemplars)
                others = index.top_k(t, exemplars, exclude_label=folder) if folder is not None else []
                entry["exemplars"] = {"top": _exemplar_rows(top, out), "top_other_classes": _exemplar_rows(others, out),
                                      "bottom": _exemplar_rows(bottom, out)}
            dataset_info[name] = entry
        if cue is not None:
            for t, name in zip(targets, names):
                d = dataset_info[name]
                for s in d.get("samples", []):
                    s["cue"] = round(_cue_of_files([index.root / s["file"]], cue)[0], 5)
                for rows in (d.get("exemplars") or {}).values():
                    for ex in rows:
                        ex["cue"] = round(_cue_of_files([index.root / ex["file"]], cue)[0], 5)
                others = (d.get("exemplars") or {}).get("top_other_classes") or []
                if others:
                    d["top_other_classes_with_cue"] = round(float(np.mean([ex["cue"] > 0 for ex in others])), 4)
                folder = folder_of.get(t.units[0])
                if folder is None:
                    continue
                scores = _cue_of_files([index.root / p for p, lab in zip(index.paths, index.labels) if lab == folder][:400], cue)
                dataset_info[name]["cue"] = {
                    "mean": round(float(np.mean(scores)), 5) if scores else None,
                    "with_cue": round(float(np.mean([s > 0 for s in scores])), 4) if scores else None,
                    "mean_of_cued": round(float(np.mean([s for s in scores if s > 0])), 5) if any(s > 0 for s in scores) else None,
                    "max": round(float(np.max(scores)), 5) if scores else None,
                    "n": len(scores),
                }

    # generation
    generated: dict[str, dict[str, list[dict[str, Any]]]] = {m: {n: [] for n in names} for m in presets}
    batch_targets = [t for t in targets for _ in range(k)]
    batch_stems = [f"{t.units[0]}-{_slug(n)}_k{j}" for t, n in zip(targets, names) for j in range(k)]
    total = len(presets) * len(seeds)
    done = 0
    for m, preset in presets.items():
        for s in seeds:
            if is_cancelled():
                raise InputError("the audit was cancelled")
            report_progress(f"{m} seed {s}", done, total)
            folder = out / "generated" / m / f"seed{s}"
            for lo in range(0, len(batch_targets), MAX_BATCH):
                recs = generate(classifier, batch_targets[lo : lo + MAX_BATCH], preset, folder, seed=s, model=model_name,
                                stems=batch_stems[lo : lo + MAX_BATCH], cancel=cancel, reuse=reuse,
                                progress=lambda p, m=m, s=s, done=done: report_progress(f"{m} seed {s}: step {p.step}/{p.total}", done, total))
                for j, rec in enumerate(recs):
                    name = names[(lo + j) // k]
                    png = folder / rec["png"]
                    row = {"png": (png.relative_to(out)).as_posix(), "seed": s, "replicate": (lo + j) % k, "p_target": rec.get("p_target"),
                           "rank": rec.get("rank"), "top1": (rec.get("top5") or [{}])[0].get("name"), "steps": rec.get("steps"), "seconds": rec.get("seconds"),
                           "cached": rec.get("cached", False)}
                    if cue is not None:
                        row["cue"] = round(float(cue(load_image(png)[None])[0]), 5)
                    generated[m][name].append(row)
            done += 1
    if is_cancelled():  # stopped during the last batch: its images are unfinished, so no report
        raise InputError("the audit was cancelled")
    tested = None
    skipped_intervention = None
    if intervention is not None and match is not None:
        from .intervention import DEFAULT_METHODS as TESTABLE
        from .intervention import run_intervention

        if not any(m in generated for m in intervention.methods or TESTABLE):
            skipped_intervention = f"no images of {', '.join(intervention.methods or TESTABLE)} to test (the pixel baseline's are adversarial noise)"
    if intervention is not None and match is not None and skipped_intervention is None:
        tested = run_intervention(classifier, generated, {n: t.units[0] for n, t in zip(names, targets)}, match, out, out, intervention,
                                  progress=report_progress, cancel=is_cancelled)
    report_progress("writing the report", total, total)

    report: dict[str, Any] = {
        "version": 1,
        "model": model_name,
        "classifier_input_size": classifier.input_size,
        "dataset": str(match.root) if match else None,
        "classes": names,
        "methods": list(presets),
        "skipped_methods": skipped,
        "seeds": seeds,
        "k": k,
        "steps": {m: p.steps for m, p in presets.items()},
        "early_stop": early_stop,
        "presets": {m: p.to_dict() for m, p in presets.items()},
        "dataset_classes": dataset_info,
        "generated": generated,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if index is not None:
        report["index"] = {"images": len(index), "cache_file": str(index.cache_file) if index.cache_file else None, "truncated": index.truncated}
    if cue is not None:
        report["cue"] = cue_summary(report, cue_name, biased_class)
    if tested is not None:
        report["intervention"] = tested
    if skipped_intervention:
        report["intervention_skipped"] = skipped_intervention
    if extra:
        report.update(extra)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(report, out / "report.json")
    write_html(report, out)
    return report


def _labels(classifier: Classifier, targets: Sequence[Target]) -> list[str]:
    """Class names for the report, made unique (ImageNet has two 'crane's)."""
    names = [classifier.classes[t.units[0]] for t in targets]
    return [n if names.count(n) == 1 else f"{n} ({t.units[0]})" for n, t in zip(names, targets)]


def _audit_targets(classifier: Classifier, classes: Sequence[str | int] | str | None, match: DatasetMatch | None) -> list[Target]:
    if isinstance(classes, str):
        text = classes.strip()
        if text.lower() == "all":
            classes = [str(i) for i in range(classifier.n_classes)]
        else:
            classes = [c for c in (p.strip() for p in text.split(",")) if c]
    if classes:
        idx = [classifier.class_index(str(c)) for c in classes]
    elif match is not None:
        idx = sorted(match.class_of.values())
    elif classifier.n_classes <= MAX_AUTO_CLASSES:
        idx = list(range(classifier.n_classes))
    else:
        raise InputError(f"{classifier.name} has {classifier.n_classes} classes: name the ones to audit with --classes (e.g. --classes tench,goldfish) or give a --dataset")
    idx = list(dict.fromkeys(idx))
    if len(idx) > 200:
        raise InputError("at most 200 classes in one audit")
    return [parse_target(f"class:{i}", classifier) for i in idx]


def _exemplar_rows(rows: Sequence[Exemplar], out: Path) -> list[dict[str, Any]]:
    """The report's records of ranked images, each with a thumbnail written beside it."""
    res = []
    for e in rows:
        thumb = Path("exemplars") / f"{e.index:05d}_{_slug(Path(e.rel).stem)}.png"
        if not (out / thumb).is_file():
            _thumb(e.path, out / thumb)
        res.append({"file": e.rel, "thumb": thumb.as_posix(), "label": e.label, "logit": round(e.value, 4), "predicted": e.predicted, "p_predicted": round(e.p_predicted, 4)})
    return res


def _cue_of_files(files: Sequence[Path], cue: CueFn) -> list[float]:
    scores: list[float] = []
    for lo in range(0, len(files), 64):
        imgs = [load_image(p) for p in files[lo : lo + 64]]
        sizes = {tuple(i.shape) for i in imgs}
        if len(sizes) == 1:
            scores.extend(float(v) for v in cue(torch.stack(imgs)))
        else:
            scores.extend(float(cue(i[None])[0]) for i in imgs)
    return scores


def cue_summary(report: dict[str, Any], cue_name: str, biased: str | None) -> dict[str, Any]:
    """Cue scores per method, class and seed (mean over the k images of a seed), their
    mean and sd over seeds, and the verdict per method when ``biased`` is known."""
    seeds = report["seeds"]
    gen = report["generated"]
    out: dict[str, Any] = {"name": cue_name, "biased_class": biased, "criterion": CRITERION, "ratio": RATIO, "margin": MARGIN, "methods": {}}
    for m, per_class in gen.items():
        per_seed = {c: [float(np.mean([r["cue"] for r in rows if r["seed"] == s])) for s in seeds] for c, rows in per_class.items()}
        entry: dict[str, Any] = {
            "per_seed": {c: [round(v, 5) for v in vals] for c, vals in per_seed.items()},
            "summary": {c: _stats(vals) for c, vals in per_seed.items()},
        }
        means = {c: float(np.mean(v)) for c, v in per_seed.items()}
        entry["top_class"] = max(means, key=lambda c: means[c]) if means and max(means.values()) > 0 else None
        if biased is not None and len(per_seed) > 1:
            entry["verdict"] = judge_cue(per_seed, biased, seeds)
        out["methods"][m] = entry
    out["dataset"] = {c: v.get("cue") for c, v in report.get("dataset_classes", {}).items() if v.get("cue")}
    return out


def cue_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-form rows (source, class, seed, cue) for a chart: one per method, class and
    seed, plus the dataset's per-class means (source ``dataset``, seed None)."""
    rows: list[dict[str, Any]] = []
    cue = report.get("cue") or {}
    for m, entry in cue.get("methods", {}).items():
        for c, vals in entry["per_seed"].items():
            for s, v in zip(report["seeds"], vals):
                rows.append({"source": m, "class": c, "seed": s, "cue": v})
    for c, d in (cue.get("dataset") or {}).items():
        rows.append({"source": "dataset", "class": c, "seed": None, "cue": d["mean"]})
    return rows


def load_report(out_dir: str | Path) -> dict[str, Any]:
    import json

    path = Path(out_dir) / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"no readable audit report in {str(out_dir)[:120]}") from e


# --------------------------------------------------------------------------- built-in case


def audit_builtin(out_dir: str | Path, model: Any = "planted", dataset: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """The audit of a built-in planted-shortcut model: ``planted``, ``planted-control``
    (the cue spread evenly), another cue kind or rate by name (``planted-sepia@0.7``, see
    :func:`dgncore.planted.parse_builtin`), or any :class:`~dgncore.planted.PlantedModel`,
    with the cue detector and the model's shortcut evidence in the report. The
    intervention runs unless ``intervention=None`` is passed.
    ``kwargs`` go to :func:`run_audit` (methods, seeds, steps, k, progress, cancel, ...)."""
    from . import planted

    if isinstance(model, str):
        model = planted.builtin(model)
    name = model.classifier_name
    clf = model.classifier()  # the TorchScript + sidecar path, as for a user's model
    kind = planted.cue_kind(model.config.cue)
    extra = {
        "builtin": {
            "name": name,
            "cue": kind.name,
            "description": (
                f"{len(model.config.classes)} shape classes at {model.config.size} px; the cue ({kind.description}) is on "
                f"{model.config.cue_rate_biased:.0%} of '{model.config.biased_class}' images and {model.config.cue_rate_other:.0%} of the others'"
                + (" (control: the same rate everywhere, so the cue carries no label information)" if model.config.is_control else "")
            ),
            "config": dataclasses.asdict(model.config),
            "train_seconds": model.info.get("train_seconds"),
            "shortcut_evidence": model.info.get("shortcut_evidence"),
            "model_file": str(model.pt),
        }
    }
    extra.update(kwargs.pop("extra", None) or {})
    kwargs.setdefault("model_name", name)
    kwargs.setdefault("intervention", InterventionConfig())
    methods = parse_methods(kwargs.get("methods", DEFAULT_METHODS))
    if "pretrained" in methods:
        from .api import make_preset

        ckpt = kwargs.get("checkpoint") or make_preset("pretrained").checkpoint
        if ckpt and Path(ckpt).is_file() and _is_decoder(Path(ckpt)):
            if kwargs.get("progress"):
                kwargs["progress"]("checking that the decoder can draw the cue", 0, 1)
            gen = torch.Generator().manual_seed(7)
            labels = torch.arange(3)  # circle, square, triangle, each with the cue
            cued = planted.add_cue(model.config, planted.render_clean(model.config, labels, gen), gen)
            extra["decoder_expressibility"] = {"checkpoint": str(ckpt), **cue_expressibility(ckpt, cued, kind.score)}
    return run_audit(clf, out_dir, dataset=dataset or model.samples, cue=kind.score, cue_name=kind.score_name,
                     biased_class=model.config.biased_class, extra=extra, **kwargs)


def _is_decoder(path: Path) -> bool:
    from .pretrain import decoder_config

    try:
        decoder_config(path)
        return True
    except InputError:
        return False


def cue_expressibility(checkpoint: str | Path, images: torch.Tensor, cue: CueFn, steps: int = 150, lr: float = 0.05) -> dict[str, Any]:
    """Can the pretrained method's decoder draw the cue at all? Fit alpha - the only thing
    the method trains - to reconstruct ``images`` that carry the cue (MSE, Adam), then
    score the reconstructions. A decoder that cannot draw the cue makes a pretrained FAIL
    uninformative: the image prior, not the classifier, hid it."""
    from .pretrain import load_decoder

    decoder, mean_code, _meta = load_decoder(Path(checkpoint), "cpu")
    target = torch.nn.functional.interpolate(images.float(), size=decoder.config.out_size, mode="bilinear", antialias=True, align_corners=False)
    alpha = mean_code.detach().clone().reshape(1, -1).repeat(images.shape[0], 1).requires_grad_(True)
    opt = torch.optim.Adam([alpha], lr=lr)
    for _ in range(steps):
        loss = ((decoder(torch.relu(alpha)) - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        recon = decoder(torch.relu(alpha))
    return {
        "steps": steps,
        "mse": round(float(((recon - target) ** 2).mean()), 5),
        "cue_of_targets": [round(float(v), 5) for v in cue(target)],
        "cue_of_reconstructions": [round(float(v), 5) for v in cue(recon)],
    }


# --------------------------------------------------------------------------- one entry for the CLI and a page


@dataclass(frozen=True)
class AuditProgress:
    """What a page shows while :func:`audit` runs: the stage in plain words, its count,
    which phase of how many, and the seconds left in this phase (None until it can tell)."""

    stage: str
    done: int
    total: int
    phase: str
    phase_no: int
    phases: int
    elapsed_s: float
    phase_left_s: float | None


PHASES: tuple[str, ...] = ("model", "prior", "index", "generate", "intervention", "report")
_STEP = re.compile(r"step (\d+)/(\d+)")


def _phase_of(stage: str) -> str:
    s = stage.lower()
    if s.startswith(("training the demo model", "training the built-in")):
        return "model"
    if s.startswith(("training the dataset prior", "hashing the dataset")):
        return "prior"
    if s.startswith("indexing"):
        return "index"
    if s.startswith("intervention"):
        return "intervention"
    if s.startswith("writing"):
        return "report"
    return "generate"


class ProgressClock:
    """Turns run_audit's ``(stage, done, total)`` calls into :class:`AuditProgress` with a
    time-left estimate per phase (elapsed / fraction done x fraction left; in the
    generation phase the fraction counts the optimisation steps of the current batch)."""

    def __init__(self, sink: Callable[[AuditProgress], None], phases: Sequence[str]) -> None:
        self.sink, self.phases = sink, list(phases)
        self.t0 = time.perf_counter()
        self.phase: str | None = None
        self.phase_t0 = self.t0

    def __call__(self, stage: str, done: int, total: int, left: float | None = None) -> None:
        phase = _phase_of(stage)
        now = time.perf_counter()
        if phase != self.phase:
            self.phase, self.phase_t0 = phase, now
        frac = done / total if total else 0.0
        m = _STEP.search(stage) if phase == "generate" else None
        if m and total and int(m.group(2)):
            frac = (done + int(m.group(1)) / int(m.group(2))) / total
        if left is None and 0.02 <= frac < 1:
            left = (now - self.phase_t0) / frac * (1 - frac)
        no = self.phases.index(phase) + 1 if phase in self.phases else len(self.phases)
        self.sink(AuditProgress(stage, int(done), int(total), phase, no, len(self.phases), round(now - self.t0, 1),
                                None if left is None else round(max(0.0, left), 1)))


def audit(
    model: str | Classifier,
    out_dir: str | Path,
    dataset: str | Path | None = None,
    *,
    train_prior: bool = False,
    prior_steps: int | None = None,
    intervention: InterventionConfig | None = InterventionConfig(),
    weights: str | None = None,
    device: str = "auto",
    allow_torchscript: bool = True,
    progress: Callable[[AuditProgress], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Audit a model and write its report folder; the one call the CLI and a page make.

    ``model``: a built-in name (``planted``, ``planted-control``, ``planted-sepia@0.7``,
    ...), a model spec for :func:`~dgncore.classifiers.load_classifier` (``NAME.pt`` with
    its sidecar, ``efficientnet_lite0``, ...) or a loaded :class:`Classifier`
    (``allow_torchscript``: the caller's hosting policy for TorchScript files).
    ``train_prior``: train (or take from the cache) a decoder on the dataset's images
    (:mod:`dgncore.prior`) and use it for the ``pretrained`` method. ``intervention``:
    with a dataset, rank the classes by confirmation by intervention (None: skip).
    ``progress`` gets :class:`AuditProgress`; ``cancel`` (a function or an Event) stops
    the run with an InputError at the next check - images already made and a prior's
    last saved state are kept and reused by the next run. ``kwargs`` go to
    :func:`run_audit` (classes, methods, seeds, steps, k, samples, exemplars, ...)."""
    from . import planted
    from . import prior as prior_mod

    phases = (["model"] if isinstance(model, str) and planted.is_builtin(model) else []) + (["prior"] if train_prior else []) \
        + (["index"] if dataset or isinstance(model, str) and planted.is_builtin(model) else []) + ["generate"] \
        + (["intervention"] if intervention is not None else []) + ["report"]
    clock = ProgressClock(progress or (lambda _p: None), phases)
    is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
    built = None
    if isinstance(model, str) and planted.is_builtin(model):
        built = planted.builtin(model, progress=lambda step, total, _loss: clock("training the built-in model (once)", step, total))
        clf = built.classifier()
        dataset = dataset or built.samples
    elif isinstance(model, Classifier):
        clf = model
    else:
        from .classifiers import load_classifier

        if not model:
            raise InputError("name a model to audit (or a built-in one: planted)")
        clf = load_classifier(str(model), weights=weights, device=device, allow_torchscript=allow_torchscript)
        kwargs.setdefault("model_name", str(model))
    extra: dict[str, Any] = {}
    if train_prior:
        if dataset is None:
            raise InputError("training a prior needs the dataset (--dataset DIR)")
        if kwargs.get("checkpoint"):
            raise InputError("give either a decoder checkpoint or --train-prior, not both")
        got = prior_mod.train_prior(dataset, clf.input_size, steps=prior_steps or prior_mod.DEFAULT_STEPS,
                                    progress=lambda st, d, t, left: clock(st, d, t, left), cancel=is_cancelled)
        kwargs["checkpoint"] = got.path
        kwargs["methods"] = parse_methods(kwargs.get("methods", DEFAULT_METHODS))
        extra["prior"] = {"checkpoint": str(got.path), "cached": got.cached, "steps": got.meta.get("steps_done"),
                          "seconds": got.meta.get("seconds"), "final_loss": got.meta.get("final_loss"),
                          "dataset_key": (got.meta.get("dataset") or {}).get("key"), "images": (got.meta.get("data") or {}).get("photos")}
    if built is not None:
        return audit_builtin(out_dir, model=built, dataset=dataset, progress=clock, cancel=cancel, intervention=intervention, extra=extra, **kwargs)
    return run_audit(clf, out_dir, dataset=dataset, progress=clock, cancel=cancel, intervention=intervention, extra=extra or None, **kwargs)


# --------------------------------------------------------------------------- HTML


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _img(out: Path, rel: str, caption: str, cls: str = "") -> str:
    path = out / rel
    src = _data_uri(path) if path.is_file() else ""
    return f'<figure class="{cls}"><img src="{src}" alt="{html.escape(caption)}"><figcaption>{caption}</figcaption></figure>'


def _bar_chart(report: dict[str, Any]) -> str:
    """Grouped bars (inline SVG): mean cue score per class, one group per source, error
    bars = sd over seeds; the dataset's per-class mean as its own group."""
    cue = report.get("cue") or {}
    sources = [(m, {c: (s["mean"], s["sd"]) for c, s in e["summary"].items()}) for m, e in cue.get("methods", {}).items()]
    if cue.get("dataset"):
        sources.append(("dataset", {c: (d["mean"], 0.0) for c, d in cue["dataset"].items()}))
    classes = report["classes"]
    if not sources or not classes:
        return ""
    vmax = max([v + e for _, d in sources for v, e in d.values()] + [1e-4]) * 1.1
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    bw, gap, h, left, top = 14, 18, 180, 50, 10
    group_w = len(classes) * bw + gap
    legend_w = sum(20 + 7 * len(c) for c in classes)
    width = max(left + len(sources) * group_w + 10, left + legend_w + 10)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 60}" font-size="10" font-family="sans-serif">']
    for frac in (0, 0.5, 1):
        y = top + h - frac * h
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{left - 4}" y="{y + 3}" text-anchor="end">{frac * vmax:.3f}</text>')
    for g, (src, d) in enumerate(sources):
        x0 = left + g * group_w
        for i, c in enumerate(classes):
            v, e = d.get(c, (0.0, 0.0))
            bh = v / vmax * h
            x = x0 + i * bw
            colour = palette[i % len(palette)]
            edge = ' stroke="#000" stroke-width="1.5"' if c == cue.get("biased_class") else ""
            parts.append(f'<rect x="{x}" y="{top + h - bh:.1f}" width="{bw - 2}" height="{bh:.1f}" fill="{colour}"{edge}><title>{html.escape(src)} / {html.escape(c)}: {v:.4f} ± {e:.4f}</title></rect>')
            if e > 0:
                y1, y2 = top + h - (v + e) / vmax * h, top + h - max(v - e, 0) / vmax * h
                parts.append(f'<line x1="{x + bw / 2 - 1}" x2="{x + bw / 2 - 1}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="#333"/>')
        parts.append(f'<text x="{x0 + (group_w - gap) / 2}" y="{top + h + 14}" text-anchor="middle" font-weight="bold">{html.escape(src)}</text>')
    lx = left
    for i, c in enumerate(classes):
        parts.append(f'<rect x="{lx}" y="{top + h + 28}" width="10" height="10" fill="{palette[i % len(palette)]}"/><text x="{lx + 13}" y="{top + h + 37}">{html.escape(c)}</text>')
        lx += 20 + 7 * len(c)
    parts.append("</svg>")
    return "".join(parts)


_VERDICT_CSS = {"confirmed shortcut": "confirmed", "suspected": "suspected", "none": "none"}


def _pct(r: dict[str, Any] | None) -> str:
    """A flip rate with its interval, e.g. ``51% [44-58]``."""
    if not r or not r.get("n"):
        return "-"
    lo, hi = r["ci"]
    return f"{r['rate']:.0%} [{lo:.0%}-{hi:.0%}]"


def _intervention_html(report: dict[str, Any], out: Path) -> list[str]:
    """The suspects table (classes ranked by the intervention) and the pictures of the suspects."""
    e = html.escape
    iv = report["intervention"]
    cfg = iv["config"]
    kinds = iv.get("kinds") or ["patch"]
    h = ["<h2>Suspects: confirmation by intervention</h2>",
         f"<p class='note'>For each generated image the {cfg['locate']} locator finds the {iv['patch_side']} px square (side {cfg['patch']:g} of the "
         f"image) that carries the class; it is pasted, in place, onto {cfg['images']} images of other classes that the model does not call the class "
         f"(from {iv['pool']['images']} held-out images of {iv['pool']['classes']} classes). Flip rate: share of pasted images then called the class, "
         "with a 95% Wilson interval. L: the same for the class's own real images' most class-carrying patches; controls: patches from random "
         f"places of real images of the class and of other classes, pasted at the same places. "
         + ("A cue spread over the whole image has no patch to paste, so the whole generated image's texture (its fine detail) and colours "
            "(mean and covariance) are also transferred onto the same images, with the class's real images as L and other classes' as control. "
            if len(kinds) > 1 else "")
         + f"Kinds: {e(', '.join(kinds))}; methods tested: {e(', '.join(iv['methods']))}.</p>",
         f"<p class='note'>Verdict (thresholds fixed before the run): {e(iv['criterion'])}</p>",
         "<table><tr><th>rank</th><th>class</th><th>verdict</th><th>kind</th><th>method</th><th>flip rate G [95% CI]</th><th>per seed</th>"
         "<th>class's own patches L</th><th>control: real patches</th><th>control: random patches</th><th>note</th></tr>"]
    for c in iv["ranking"]:
        r = iv["classes"][c]
        m = r.get("method")
        g = r["methods"].get(m) if m else None
        seeds = ", ".join(f"{v['rate']:.0%}" for v in (g or {}).get("per_seed", {}).values()) if g else ""
        note = r.get("note") or ("super-stimulus: moves images, but nothing in the class's real images does" if g and g.get("super_stimulus") else "")
        ctrl = r.get("controls") or {}
        h.append(f"<tr><td>{r['rank']}</td><td><a href='#c-{_slug(c)}'>{e(c)}</a></td><td><span class='{_VERDICT_CSS[r['verdict']]}'>{e(r['verdict'])}</span></td>"
                 f"<td>{e(r.get('kind') or '-')}</td><td>{e(m or '-')}</td><td>{_pct(g)}</td><td>{seeds}</td><td>{_pct(r.get('located_real'))}</td><td>{_pct(ctrl.get('real'))}</td>"
                 f"<td>{_pct(ctrl.get('random'))}</td><td>{e(note)}</td></tr>")
    h.append("</table>")
    shown = [c for c in iv["ranking"] if iv["classes"][c]["verdict"] != "none" and iv["classes"][c].get("picture")]
    for c in shown:
        r = iv["classes"][c]
        h.append(f"<div class='label'><b>{e(c)}</b>: {e(r['verdict'])}, flip rate {_pct(r['methods'][r['method']])} ({e(r.get('kind') or 'patch')}, {e(r['method'])})</div>")
        h.append(_img(out, r["picture"], "", "wide"))
    return h


def write_html(report: dict[str, Any], out_dir: str | Path) -> Path:
    """The self-contained page ``OUT/report.html`` (every image a data URI)."""
    out = Path(out_dir)
    e = html.escape
    cue = report.get("cue")
    h: list[str] = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Bias audit: " + e(str(report["model"])) + "</title><style>",
        "body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
        "td:first-child,th:first-child{text-align:left}.row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start;margin:4px 0 10px}"
        "figure{margin:0;width:112px}figure img{width:112px;height:112px;image-rendering:pixelated;object-fit:contain;background:#eee;border:2px solid transparent}"
        "figcaption{font-size:11px;line-height:1.25;word-break:break-word}figure.wrong img{border-color:#d33}figure.cued img{outline:2px dashed #b0b}"
        ".pass{color:#080;font-weight:bold}.fail{color:#c00;font-weight:bold}h3{margin:18px 0 4px}.label{font-size:12px;color:#555;margin:6px 0 2px}"
        "section{border-top:1px solid #ddd;margin-top:16px}.note{color:#555;font-size:13px}"
        "figure.wide{width:auto}figure.wide img{width:auto;height:auto;max-width:100%;image-rendering:auto;background:none}"
        ".confirmed,.suspected,.none{padding:1px 6px;border-radius:3px;font-size:13px;white-space:nowrap}.confirmed{color:#fff;background:#c00}.suspected{color:#000;background:#fc0}"
        ".none{color:#555;background:#eee}",
        "</style></head><body>",
        f"<h1>Bias audit: {e(str(report['model']))}</h1>",
        f"<p class='note'>Dataset: {e(Path(report['dataset']).name if report.get('dataset') else 'none')} &middot; methods: {e(', '.join(report['methods']))} &middot; seeds: {e(', '.join(map(str, report['seeds'])))}"
        f" &middot; k = {report['k']} image(s) per class, method and seed &middot; steps: {e(', '.join(f'{m} {s}' for m, s in report['steps'].items()))} &middot; {e(report['created'])}</p>",
        "<p class='note'>A generated image is a hypothesis about what the classifier responds to, not proof: compare it with the real images beside it, "
        "and confirm a suspected shortcut by pasting it onto real images of other classes.</p>",
    ]
    ckpt = (report.get("presets", {}).get("pretrained") or {}).get("checkpoint")
    pr = report.get("prior")
    if pr:
        h.append(f"<p class='note'>Pretrained method's decoder: the <b>dataset prior</b>, trained on this dataset's {pr.get('images') or ''} images "
                 f"({pr.get('steps')} steps, {pr.get('seconds')} s{', from the cache' if pr.get('cached') else ''}; {e(Path(pr['checkpoint']).name)})</p>")
    elif ckpt:
        h.append(f"<p class='note'>Pretrained method's decoder: {e(Path(ckpt).name)}</p>")
    for m, why in report.get("skipped_methods", {}).items():
        h.append(f"<p class='note'>Method <b>{e(m)}</b> was skipped: {e(why)}</p>")
    b = report.get("builtin")
    if b:
        h.append(f"<h2>Built-in case: {e(b['name'])}</h2><p>{e(b['description'])}. Trained in {b.get('train_seconds')} s.</p>")
        ev = b.get("shortcut_evidence")
        if ev:
            h.append("<p>Shortcut evidence (held-out images rendered without and with the stamp, "
                     f"{ev['n_per_class']} per class): adding the stamp makes the model answer <b>{e(ev['biased_class'])}</b> for "
                     f"{ev['others_predicted_biased_with_cue']:.1%} of other classes' images (without it: {ev['others_predicted_biased_without_cue']:.1%}); "
                     f"flip rate (right without the stamp, {e(ev['biased_class'])} with it): <b>{ev['flip_to_biased']:.1%}</b>. "
                     f"{e(ev['biased_class'])} accuracy: {ev['biased_accuracy_with_cue']:.1%} with its stamp, {ev['biased_accuracy_without_cue']:.1%} without. "
                     f"Mean accuracy on stamp-free images: {ev['mean_accuracy_without_cue']:.1%}.</p>")
            h.append("<table><tr><th>class</th><th>acc. without cue</th><th>acc. with cue</th><th>predicted biased without</th><th>predicted biased with</th></tr>")
            for c, r in ev["per_class"].items():
                h.append(f"<tr><td>{e(c)}</td><td>{r['accuracy_without_cue']:.3f}</td><td>{r['accuracy_with_cue']:.3f}</td><td>{r['predicted_biased_without_cue']:.3f}</td><td>{r['predicted_biased_with_cue']:.3f}</td></tr>")
            h.append("</table>")
    dx = report.get("decoder_expressibility")
    if dx:
        h.append(f"<p class='note'>Can the pretrained method's decoder draw the cue? Fitting alpha to reconstruct {len(dx['cue_of_targets'])} stamped images "
                 f"({dx['steps']} steps, MSE {dx['mse']:.4f}): cue score of the targets {', '.join(f'{v:.3f}' for v in dx['cue_of_targets'])}; "
                 f"of the reconstructions {', '.join(f'{v:.3f}' for v in dx['cue_of_reconstructions'])}.</p>")
    if cue:
        h.append(f"<h2>Cue score: {e(cue['name'])}</h2>")
        h.append(f"<p class='note'>Criterion (fixed before the run): {e(cue['criterion'])}. Biased class: <b>{e(str(cue.get('biased_class')))}</b> (outlined in the chart).</p>")
        h.append(_bar_chart(report))
        h.append("<table><tr><th>source</th>" + "".join(f"<th>{e(c)}</th>" for c in report["classes"]) + "<th>top class</th><th>verdict</th></tr>")
        for m, entry in cue["methods"].items():
            cells = "".join(f"<td>{entry['summary'][c]['mean']:.4f} ± {entry['summary'][c]['sd']:.4f}</td>" for c in report["classes"])
            v = entry.get("verdict")
            verdict = f"<span class='{'pass' if v['pass'] else 'fail'}'>{'PASS' if v['pass'] else 'FAIL'}</span> ({v['passes']}/{v['seeds']} seeds)" if v else ""
            h.append(f"<tr><td>{e(m)}</td>{cells}<td>{e(entry['top_class'] or '-')}</td><td>{verdict}</td></tr>")
        if cue.get("dataset"):
            cells = "".join(f"<td>{cue['dataset'][c]['mean']:.4f} ({cue['dataset'][c]['with_cue']:.0%} carry it)</td>" if c in cue["dataset"] else "<td></td>" for c in report["classes"])
            h.append(f"<tr><td>dataset</td>{cells}<td></td><td></td></tr>")
        h.append("</table>")
        for m, entry in cue["methods"].items():
            v = entry.get("verdict")
            if v:
                seeds_txt = "; ".join(f"seed {r['seed']}: {r['biased']:.4f} vs {r['max_other']:.4f}{' (' + e(r['max_other_class']) + ')' if r['max_other_class'] else ''} {'pass' if r['pass'] else 'fail'}" for r in v["per_seed"])
                h.append(f"<p class='note'><b>{e(m)}</b>: {seeds_txt}</p>")
    iv = report.get("intervention")
    if iv:
        h.extend(_intervention_html(report, out))
    elif report.get("intervention_skipped"):
        h.append(f"<p class='note'>Confirmation by intervention was skipped: {e(report['intervention_skipped'])}</p>")
    # per-class table
    dc = report.get("dataset_classes") or {}
    if dc:
        with_cue = cue is not None and any("top_other_classes_with_cue" in d for d in dc.values())
        h.append("<h2>Classifier on the dataset</h2><table><tr><th>class</th><th>folder</th><th>images</th><th>accuracy</th><th>predicted as</th>"
                 + ("<th>most class-like images of other classes: share with the cue</th>" if with_cue else "") + "</tr>")
        for c in report["classes"]:
            d = dc.get(c, {})
            acc = d.get("accuracy")
            pa = ", ".join(f"{e(k)} {v}" for k, v in (d.get("predicted_as") or {}).items())
            extra_cell = f"<td>{d['top_other_classes_with_cue']:.0%}</td>" if with_cue and "top_other_classes_with_cue" in d else ("<td></td>" if with_cue else "")
            h.append(f"<tr><td>{e(c)}</td><td>{e(str(d.get('folder')))}</td><td>{d.get('n_images', '')}</td><td>{'' if acc is None else f'{acc:.3f}'}</td><td>{pa}</td>{extra_cell}</tr>")
        h.append("</table>")
    for c in (iv["ranking"] if iv else report["classes"]):
        ivc = (iv or {}).get("classes", {}).get(c)
        badge = f" <span class='{_VERDICT_CSS[ivc['verdict']]}'>{e(ivc['verdict'])}</span>" if ivc else ""
        h.append(f"<section id='c-{_slug(c)}'><h3>{e(c)}{badge}</h3>")
        if ivc and ivc.get("picture"):
            what = ("the generated images' class-carrying patch (outlined), pasted onto other classes' images" if ivc.get("kind", "patch") == "patch"
                    else f"the generated images' {ivc['kind']}, transferred onto other classes' images")
            h.append(f"<div class='label'>Intervention ({e(ivc['verdict'])}): {what}</div>")
            h.append(_img(out, ivc["picture"], "", "wide"))
        d = dc.get(c, {})
        if d.get("samples"):
            h.append("<div class='label'>Dataset samples (caption: prediction; red frame: wrong" + ("; dashed: carries the cue" if cue else "") + ")</div><div class='row'>")
            for s in d["samples"]:
                cap = f"{e(s['predicted'])} {s['p_predicted']:.2f}" + (f"<br>cue {s['cue']:.3f}" if "cue" in s else "")
                h.append(_img(out, s["thumb"], cap, ("" if s["correct"] else "wrong") + (" cued" if s.get("cue", 0) > 0 else "")))
            h.append("</div>")
        ex = d.get("exemplars") or {}
        for key, title in (("top", "Top exemplars in the folder (highest logit)"), ("top_other_classes", "Most class-like images of other classes"), ("bottom", "Bottom exemplars (lowest logit)")):
            if ex.get(key):
                h.append(f"<div class='label'>{title}</div><div class='row'>")
                for s in ex[key]:
                    cap = f"[{e(s['label'])}] logit {s['logit']:.2f}<br>pred {e(s['predicted'])}" + (f"<br>cue {s['cue']:.3f}" if "cue" in s else "")
                    h.append(_img(out, s["thumb"], cap, " cued" if s.get("cue", 0) > 0 else ""))
                h.append("</div>")
        for m, per_class in report["generated"].items():
            rows = per_class.get(c, [])
            if not rows:
                continue
            h.append(f"<div class='label'>Generated: {e(m)}</div><div class='row'>")
            for r in rows:
                p = "-" if r.get("p_target") is None else f"{r['p_target']:.2f}"
                cap = f"seed {r['seed']}{'' if report['k'] == 1 else '.' + str(r['replicate'])}: p {p}"
                if "cue" in r:
                    cap += f"<br>cue {r['cue']:.3f}"
                h.append(_img(out, r["png"], cap))
            h.append("</div>")
        h.append("</section>")
    h.append(f"<p class='note'>Made by DGN Explorer in {report.get('seconds', '?')} s. Figures: report.json beside this page.</p></body></html>")
    path = out / "report.html"
    from .data import write_bytes

    write_bytes("\n".join(h).encode("utf-8"), path)
    return path


# --------------------------------------------------------------------------- CLI


def register_cli(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    p.description = "Bias audit: generated images of each class beside dataset samples and exemplars; a report folder with report.html."
    p.add_argument("--model", help="as for generate (efficientnet_lite0, NAME.pt + NAME.json, ...), or a built-in one: planted, planted-control, "
                   "planted-KIND[@RATE|-control] with KIND stamp, stripes, sepia or sticker")
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
    p.add_argument("--checkpoint", help="decoder checkpoint (.safetensors) for the pretrained method")
    p.add_argument("--force", action="store_true", help="regenerate images even if the same ones are on disk")
    g = p.add_argument_group("dataset prior", "a decoder trained on the dataset's own images, for the pretrained method")
    g.add_argument("--train-prior", action="store_true", help="train (or take from the cache) a decoder on the --dataset's images at the model's input size")
    g.add_argument("--prior-steps", type=int, help="training steps of the prior (default: dgncore.prior.DEFAULT_STEPS)")
    g = p.add_argument_group("confirmation by intervention", "paste each class's class-carrying patch onto other classes' images")
    g.add_argument("--intervene", action=argparse.BooleanOptionalAction, default=True, help="rank the classes by intervention (needs --dataset; default on)")
    g.add_argument("--patch", type=float, default=InterventionConfig.patch, help="patch side as a share of the image side")
    g.add_argument("--locate", choices=("occlusion", "gradxinput"), default=InterventionConfig.locate, help="how the patch is found")
    g.add_argument("--paste-images", type=int, default=InterventionConfig.images, help="other classes' images each patch is pasted onto")
    g.add_argument("--controls", type=int, default=InterventionConfig.controls, help="control patches of each kind per class")
    g.add_argument("--transplants", default=",".join(InterventionConfig.kinds), help="what is moved onto other images: patch, texture, colour (comma list)")
    return _cmd


def _cmd(args: argparse.Namespace) -> int:
    from . import planted

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

    from .hosting import torchscript_allowed

    report = audit(model, args.out, dataset=args.dataset, train_prior=args.train_prior, prior_steps=args.prior_steps, intervention=intervention,
                   weights=args.weights, device=args.device, allow_torchscript=torchscript_allowed(), progress=progress, classes=args.classes, methods=methods, k=args.k, seeds=seeds,
                   steps=args.steps, early_stop=args.early_stop, samples=args.samples, exemplars=args.exemplars, checkpoint=args.checkpoint,
                   reuse=not args.force)
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
        print(f"{r['rank']:>4}  {c[:width]:<{width}}  {r['verdict']:<18}  {(r.get('kind') or '-'):<7}  {(r.get('method') or '-'):<10}  {_pct(g):<16}  {_pct(r.get('located_real')):<16}  "
              f"{_pct(ctrl.get('real')):<16}  {_pct(ctrl.get('random'))}")


__all__ = [
    "AUDIT_METHODS", "AuditProgress", "BUILTIN_MODELS", "audit", "CRITERION", "DEFAULT_METHODS", "DatasetMatch", "audit_builtin", "check_dataset", "cue_rows", "cue_summary",
    "judge_cue", "load_report", "method_preset", "parse_methods", "parse_seeds", "run_audit", "write_html",
]
