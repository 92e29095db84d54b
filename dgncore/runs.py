"""The few calls every front end uses: make a preset, generate (or reuse) results, galleries.

The CLI, the dashboard, the job queue and the audit all go through :func:`generate`,
so a result looks and scores the same whichever door it came through, and the same
request twice is served from disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from dgncore.cancel import Cancel, cancel_fn
from dgncore.drawing.objectives import Target, parse_target
from dgncore.drawing.optimize import MAX_BATCH, ProgressFn, optimize
from dgncore.drawing.presets import Preset
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier
from dgncore.result_files import preset_record, read_result, settings_key, write_index
from dgncore.results import image_suffix, run_records, save_result


def _request_key(rec: dict[str, Any]) -> tuple:
    return (rec.get("model"), rec.get("target"), rec.get("seed"), settings_key(rec.get("hyperparameters")))


def cached_result(out_dir: Path, stem: str, model: str, target: Target, preset: Preset, seed: int,
                  image_format: str | None = None) -> dict[str, Any] | None:
    """The saved result for exactly this request, if one is on disk and complete (and, with
    ``image_format``, saved in that format)."""
    path = Path(out_dir) / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        rec = read_result(path)
    except InputError:
        return None
    if not (Path(out_dir) / str(rec.get("png", ""))).is_file():
        return None
    if image_format is not None and Path(str(rec.get("png", ""))).suffix != image_suffix(image_format):
        return None
    want = (model, target.spec, seed, settings_key(preset_record(preset)))
    if rec.get("cancelled") or _request_key(rec) != want:
        return None
    return rec


def generate(
    classifier: Classifier,
    targets: Sequence[Target],
    preset: Preset,
    out_dir: str | Path,
    seed: int = 0,
    model: str | None = None,
    stems: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    cancel: Cancel = None,
    reuse: bool = True,
    keep_frames: bool = False,
    check_every: int = 10,
    image_format: str = "png",
) -> list[dict[str, Any]]:
    """Optimise every target not already on disk (one batch), save PNG (or WebP) + JSON,
    return the records in the order of ``targets``."""
    out_dir = Path(out_dir)
    model = model or classifier.name
    stems = list(stems) if stems is not None else [t.slug for t in targets]
    if len(set(stems)) != len(stems):
        raise InputError("the same target is asked for twice in one batch")
    records: list[dict[str, Any] | None] = [
        cached_result(out_dir, s, model, t, preset, seed, image_format) if reuse else None for s, t in zip(stems, targets)
    ]
    todo = [i for i, r in enumerate(records) if r is None]
    if todo:
        run = optimize(classifier, [targets[i] for i in todo], preset, seed=seed, progress=progress, cancel=cancel, keep_frames=keep_frames, check_every=check_every)
        metas = run_records(run, classifier, model)
        for j, i in enumerate(todo):
            rec = save_result(out_dir, stems[i], run.images[j], classifier, targets[i], metas[j], image_format=image_format)
            if keep_frames:
                rec["_frames"] = [f[j] for f in run.frames]
            records[i] = rec
    for r in records:
        if r is not None:
            r.setdefault("cached", False)
    for i, r in enumerate(records):
        if i not in todo and r is not None:
            r["cached"] = True
    return [r for r in records if r is not None]


def parse_targets(texts: Sequence[str], classifier: Classifier) -> list[Target]:
    targets = [parse_target(t, classifier) for t in texts]
    if len(targets) > MAX_BATCH:
        raise InputError(f"at most {MAX_BATCH} targets in one run, got {len(targets)}")
    return targets


def class_targets(classifier: Classifier, classes: str) -> list[Target]:
    """``all`` or a comma list of indices / names (ranges like 0-99 too)."""
    text = classes.strip()
    if text.lower() == "all":
        idx = list(range(classifier.n_classes))
    else:
        idx = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            a, dash, b = part.partition("-")
            if dash and a.strip().isdigit() and b.strip().isdigit():
                lo, hi = int(a), int(b)
                if lo > hi or hi >= classifier.n_classes:
                    raise InputError(f"class range {part!r} is outside 0-{classifier.n_classes - 1}")
                idx.extend(range(lo, hi + 1))
            else:
                idx.append(classifier.class_index(part))
        if not idx:
            raise InputError("no classes given: write all, or a list like 0,1,tench")
    seen: set[int] = set()
    idx = [i for i in idx if not (i in seen or seen.add(i))]
    return [parse_target(f"class:{i}", classifier) for i in idx]


def parse_shard(text: str | None) -> tuple[int, int]:
    """``i/n`` (1-based) -> (i, n)."""
    if not text:
        return 1, 1
    a, slash, b = text.partition("/")
    if not (slash and a.strip().isdigit() and b.strip().isdigit()) or not 1 <= int(a) <= int(b) <= 10_000:
        raise InputError(f"bad --shard {text[:20]!r}: write i/n with 1 <= i <= n, e.g. 2/8")
    return int(a), int(b)


def draw_classes(
    classifier: Classifier,
    targets: Sequence[Target],
    preset: Preset,
    out_dir: str | Path,
    seed: int = 0,
    model: str | None = None,
    batch: int = 8,
    shard: tuple[int, int] = (1, 1),
    progress: Callable[[int, int, list[dict[str, Any]]], None] | None = None,
    cancel: Cancel = None,
    image_format: str = "png",
) -> list[dict[str, Any]]:
    """Results for many targets in batches; resumable (done targets are skipped) and
    shardable (shard i of n takes every n-th target). Writes ``index.json``.
    ``image_format="webp"`` keeps a compact gallery (scored on the WebP files)."""
    if not 1 <= batch <= MAX_BATCH:
        raise InputError(f"batch must be between 1 and {MAX_BATCH}")
    i, n = shard
    mine = [t for k, t in enumerate(targets) if k % n == i - 1]
    out_dir = Path(out_dir)
    done: list[dict[str, Any]] = []
    pending = [t for t in mine if cached_result(out_dir, t.slug, model or classifier.name, t, preset, seed) is None]
    finished = len(mine) - len(pending)
    if progress:
        progress(finished, len(mine), [])
    for start in range(0, len(pending), batch):
        if cancel_fn(cancel)():
            break
        chunk = pending[start : start + batch]
        recs = generate(classifier, chunk, preset, out_dir, seed=seed, model=model, cancel=cancel, image_format=image_format)
        done.extend(recs)
        finished += len(chunk)
        if progress:
            progress(finished, len(mine), recs)
    write_index(out_dir)
    return done


__all__ = ["generate", "draw_classes", "parse_targets", "class_targets", "parse_shard", "cached_result"]
