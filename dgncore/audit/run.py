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
built-in case (:mod:`dgncore.audit.planted`) has a known planted shortcut; the audit passes
for a method when, at every seed, the biased class's generated images carry the cue
(see :data:`CRITERION`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from dgncore.audit.datasets import DatasetMatch, check_dataset
from dgncore.audit.intervention import InterventionConfig
from dgncore.audit.methods import (
    DEFAULT_METHODS,
    DEFAULT_SEEDS,
    method_preset,
    parse_methods,
    parse_seeds,
)
from dgncore.audit.report import write_html
from dgncore.cancel import Cancel, cancel_fn
from dgncore.data import load_image, save_png, slug, write_json
from dgncore.drawing.objectives import Target, parse_target
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier
from dgncore.results import image_suffix

if TYPE_CHECKING:
    from dgncore.audit.exemplars import Exemplar

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

#: ``progress(stage, done, total, *, phase, step=None)``: the stage in plain words, its count,
#: the phase it belongs to (:data:`dgncore.audit.pipeline.PHASES`) and, while drawing, the
#: optimisation step of the current batch as (step, steps)
ProgressFn = Callable[..., None]
CueFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- the audit


def _thumb(src: Path, dest: Path, size: int = THUMB) -> None:
    from dgncore.data import open_image

    im = open_image(src)
    im.thumbnail((size, size))
    save_png(np.asarray(im, dtype=np.uint8), dest)


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(a.mean()), 5), "sd": round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 5), "n": int(len(a))}


def cue_verdict(per_seed: dict[str, list[float]], biased: str, seeds: Sequence[int]) -> dict[str, Any]:
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
    cancel: Cancel = None,
    intervention: InterventionConfig | None = None,
    photos: bool = True,
    image_format: str = "png",
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
    their class-carrying patch onto other classes' images (:mod:`dgncore.audit.intervention`);
    the report then ranks the classes by it (``report["intervention"]["ranking"]``).
    ``photos=False``: the folder gets no image made from the dataset's photos (no samples,
    exemplars or pasted examples: generated images and figures only), for photos whose
    terms keep them out of a shared report. ``image_format="webp"``: the generated images
    and intervention pictures as lossy WebP (a compact report; scored on the WebP files)."""
    from dgncore.audit.exemplars import build_index
    from dgncore.drawing.presets import MAX_BATCH
    from dgncore.runs import generate

    t_start = time.perf_counter()
    out = Path(out_dir)
    model_name = model_name or classifier.name
    is_cancelled = cancel_fn(cancel)
    report_progress = progress or (lambda *_a, **_k: None)
    if not 1 <= k <= 16:
        raise InputError("k (images per class, method and seed) must be between 1 and 16")
    if not 0 <= samples <= 64 or not 0 <= exemplars <= 32:
        raise InputError("samples must be 0-64 and exemplars 0-32 per class")
    seeds = parse_seeds(seeds)
    methods = parse_methods(methods)
    if not photos:  # and no photo left from an earlier run into the same folder
        samples = exemplars = 0
        for sub in ("samples", "exemplars", "intervention"):
            shutil.rmtree(Path(out_dir) / sub, ignore_errors=True)
    image_suffix(image_format)  # an unknown format fails now, not after the drawing

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
        report_progress("indexing the dataset", 0, 1, phase="index")
        index = build_index(classifier, match.root, progress=lambda d, t: report_progress("indexing the dataset", d, t, phase="index"), cancel=is_cancelled)
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
                    thumb = Path("samples") / slug(folder, empty='class') / f"{i:05d}_{slug(Path(rel).stem, empty='class')}.png"
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
    batch_stems = [f"{t.units[0]}-{slug(n, empty='class')}_k{j}" for t, n in zip(targets, names) for j in range(k)]
    total = len(presets) * len(seeds)
    done = 0
    for m, preset in presets.items():
        for s in seeds:
            if is_cancelled():
                raise InputError("the audit was cancelled")
            report_progress(f"{m} seed {s}", done, total, phase="generate")
            folder = out / "generated" / m / f"seed{s}"
            for lo in range(0, len(batch_targets), MAX_BATCH):
                recs = generate(classifier, batch_targets[lo : lo + MAX_BATCH], preset, folder, seed=s, model=model_name,
                                stems=batch_stems[lo : lo + MAX_BATCH], cancel=cancel, reuse=reuse, image_format=image_format,
                                progress=lambda p, m=m, s=s, done=done: report_progress(f"{m} seed {s}: step {p.step}/{p.total}", done, total,
                                                                                                   phase="generate", step=(p.step, p.total)))
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
        from dgncore.audit.intervention import DEFAULT_METHODS as TESTABLE
        from dgncore.audit.intervention import run_intervention

        if not any(m in generated for m in intervention.methods or TESTABLE):
            skipped_intervention = f"no images of {', '.join(intervention.methods or TESTABLE)} to test (the pixel baseline's are adversarial noise)"
    if intervention is not None and match is not None and skipped_intervention is None:
        tested = run_intervention(classifier, generated, {n: t.units[0] for n, t in zip(names, targets)}, match, out, out, intervention,
                                  progress=report_progress, cancel=is_cancelled, photos=photos, image_format=image_format)
    report_progress("writing the report", total, total, phase="report")

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
        "photos": photos,
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
        thumb = Path("exemplars") / f"{e.index:05d}_{slug(Path(e.rel).stem, empty='class')}.png"
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
            entry["verdict"] = cue_verdict(per_seed, biased, seeds)
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


def report_files(report: dict[str, Any]) -> list[str]:
    """The images a report names (relative to its folder): generated images and intervention pictures."""
    rels = [r["png"] for per_class in report["generated"].values() for rows in per_class.values() for r in rows]
    return rels + [c["picture"] for c in (report.get("intervention") or {}).get("classes", {}).values() if c.get("picture")]


def load_report(out_dir: str | Path) -> dict[str, Any]:
    import json

    path = Path(out_dir) / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"no readable audit report in {str(out_dir)[:120]}") from e


__all__ = ["CRITERION", "cue_rows", "cue_summary", "cue_verdict", "load_report", "report_files", "run_audit"]
