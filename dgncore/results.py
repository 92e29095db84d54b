"""Saving results and scoring them honestly.

A result is ``<stem>.png`` plus ``<stem>.json``. The scores in the JSON are computed on
the PNG *reloaded from disk* (8-bit, as the user gets it) with the classifier in eval
and inference mode, never taken from the training pass. Both files are written
atomically; the JSON is written last, so a result exists exactly when its JSON does.

A class result also gets a *second opinion*: the same saved image scored by a held-out
ImageNet network (EfficientNet-Lite2; Lite0 for Lite2's own images), so an image that
fools only the network it was made for shows as one. Compact galleries (the dashboard's
examples) are saved as lossy WebP instead of PNG, and scored on the WebP as saved; the
record's ``png`` field names the image file either way.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dgncore.data import load_image, save_image, write_bytes, write_json
from dgncore.drawing.objectives import Objective, Target
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier, is_imagenet
from dgncore.result_files import VERSION, decoder_record, preset_record

N_REFERENCE = 16  # enough for a percentile; ~2 s per layer on 2 CPU cores
MAX_HISTORY_POINTS = 300
#: the held-out network that scores every ImageNet class result a second time
SECOND_OPINION = "efficientnet_lite2"
#: how many nearest real photos' classes a result names
NEAREST_PHOTOS = 3
#: ... and the one that scores images made for SECOND_OPINION itself
SECOND_OPINION_OF_JUDGE = "efficientnet_lite0"
#: image file formats of a result: lossless PNG, or lossy WebP for compact galleries
IMAGE_FORMATS = {"png": ".png", "webp": ".webp"}


def image_suffix(image_format: str) -> str:
    """The file suffix of a saved image format (:data:`IMAGE_FORMATS`), or an InputError."""
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"unknown image format {image_format[:20]!r}: choose one of {', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[image_format]


@torch.inference_mode()
def score_image(classifier: Classifier, image: torch.Tensor, target: Target) -> dict[str, Any]:
    """Scores of one (3, H, W) image in [0, 1] for ``target``: the target's softmax
    probability and rank and the top-5 classes; for layer targets the activation and its
    percentile among random images."""
    image = image.to(classifier.device)[None]
    objective = Objective([target], classifier.n_classes, device=classifier.device)
    logits, acts = classifier.logits_and_activations(image, objective.layers)
    logits = logits.float()
    probs = torch.softmax(logits, 1)[0]
    order = torch.argsort(probs, descending=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order), device=order.device)
    top5 = [{"index": int(i), "name": classifier.classes[int(i)], "p": round(float(probs[i]), 6)} for i in order[:5]]
    out: dict[str, Any] = {"top5": top5}
    activation = float(objective.activation(logits, acts)[0])
    out["activation"] = round(activation, 6)
    if target.is_class:
        out["p_target"] = round(float(sum(probs[u] for u in target.units)), 6)
        out["rank"] = int(min(ranks[u] for u in target.units)) + 1
        if len(target.units) > 1:
            out["p_classes"] = {classifier.classes[u]: round(float(probs[u]), 6) for u in target.units}
            out["rank_classes"] = {classifier.classes[u]: int(ranks[u]) + 1 for u in target.units}
    else:
        ref = reference_activations(classifier, target)
        out["percentile"] = round(100.0 * float((ref < activation).float().mean()), 2)
        out["p_target"] = None
        out["rank"] = None
    return out


def second_opinion_model(classifier: Classifier) -> str | None:
    """The held-out network that judges ``classifier``'s images: Lite2 (Lite0 for Lite2),
    for ImageNet models only (another class list has no second opinion to ask)."""
    if not is_imagenet(classifier):
        return None
    return SECOND_OPINION_OF_JUDGE if classifier.name == SECOND_OPINION else SECOND_OPINION


@torch.inference_mode()
def second_opinion(classifier: Classifier, image: torch.Tensor, target: Target) -> dict[str, Any] | None:
    """``{"model", "p_target", "rank"}`` of a (3, H, W) image for a class target under
    :func:`second_opinion_model` (loaded once per process), or None where there is none.
    Where the judge is the shipped photo bank's (Lite2), also ``"nearest"``: the classes of
    the real photos nearest to the image in its features, and ``"photo_rank"``: where the
    target's own photo comes among them (plausibility; 1 = nearest): what the picture
    resembles, in class names a person can check (``bench/nearest_photos.py``)."""
    name = second_opinion_model(classifier) if target.is_class else None
    if name is None:
        return None
    from dgncore import evaluation
    from dgncore.models.classifiers import load_classifier

    judge = load_classifier(name, device=classifier.device)
    bank = evaluation.shipped_bank() if name == evaluation.JUDGE_MODEL else None
    if bank is not None:
        logits, emb = evaluation.logits_and_embeddings(image[None], judge)
        logits = logits[0]
    else:
        logits = judge.logits(image.to(judge.device)[None]).float()[0]
    probs = torch.softmax(logits.float(), 0)
    rank = int((probs > max(probs[u] for u in target.units)).sum()) + 1
    out: dict[str, Any] = {"model": name, "p_target": round(float(sum(probs[u] for u in target.units)), 6), "rank": rank}
    if bank is not None:
        out["nearest"] = [judge.classes[c] for c in bank.nearest_classes(emb, NEAREST_PHOTOS)[0]]
        ranks = [r for r in bank.ranks(emb.expand(len(target.units), -1), list(target.units)) if r is not None]
        out["photo_rank"] = min(ranks) if ranks else None
    return out


def reference_images(n: int = N_REFERENCE, size: int = 224, seed: int = 0) -> torch.Tensor:
    """Random images for percentiles: smooth coloured noise at several scales (fixed seed)."""
    g = torch.Generator().manual_seed(seed)
    imgs = []
    for i in range(n):
        cells = 2 ** (1 + i % 6)
        low = torch.rand(1, 3, cells, cells, generator=g)
        imgs.append(F.interpolate(low, size=size, mode="bilinear", align_corners=False)[0])
    return torch.stack(imgs).clamp(0, 1)


def reference_activations(classifier: Classifier, target: Target) -> torch.Tensor:
    """a(target) on :func:`reference_images` (cached per model and layer)."""
    assert target.layer is not None
    acts = _layer_reference(classifier, target.layer)
    objective = Objective([target] * acts.shape[0], classifier.n_classes)
    return objective.activation(torch.zeros(acts.shape[0], classifier.n_classes), {target.layer: acts})


@functools.lru_cache(maxsize=16)
def _layer_reference(classifier: Classifier, layer: str) -> torch.Tensor:
    imgs = reference_images(size=classifier.input_size)
    with torch.inference_mode():
        _, acts = classifier.logits_and_activations(imgs, [layer])
    return acts[layer].float().cpu()


def _thin(history: list[list[float]]) -> list[list[float]]:
    if len(history) <= MAX_HISTORY_POINTS:
        return [[round(v, 4) for v in row] for row in history]
    stride = -(-len(history) // MAX_HISTORY_POINTS)
    kept = history[::stride] + ([history[-1]] if (len(history) - 1) % stride else [])
    return [[round(v, 4) for v in row] for row in kept]


def save_result(
    out_dir: Path,
    stem: str,
    image: torch.Tensor,
    classifier: Classifier,
    target: Target,
    meta: dict[str, Any],
    image_format: str = "png",
) -> dict[str, Any]:
    """Write ``<stem>.png`` (or ``.webp``), reload it, score it (with a second opinion
    where there is one), write ``<stem>.json``; return the record."""
    out_dir = Path(out_dir)
    png = out_dir / f"{stem}{image_suffix(image_format)}"
    save_image(image, png)
    reloaded = load_image(png)
    opinion = second_opinion(classifier, reloaded, target)
    record = {
        "version": VERSION,
        "target": target.spec,
        "target_label": target.label,
        "target_kind": target.kind,
        **meta,
        "png": png.name,
        "scored_on": f"saved 8-bit {image_format.upper()} reloaded from disk, classifier in eval/inference mode",
        **score_image(classifier, reloaded, target),
        **({"second_opinion": opinion} if opinion else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(record, out_dir / f"{stem}.json")
    return record


GIF_FRAME_MS = 150
GIF_LAST_FRAME_MS = 1200


def optimisation_gif(frames: list[torch.Tensor], record: dict[str, Any], png: Path | None = None) -> bytes:
    """The optimisation of one image as an animated GIF: a frame every 10 steps (the
    loop's checks) up to the step where the image was fixed, then the saved PNG itself,
    held longer."""
    import io

    from PIL import Image

    from dgncore.data import to_uint8

    keep = max(1, -(-int(record.get("steps") or 1) // 10))
    ims = [Image.fromarray(to_uint8(f)) for f in list(frames)[:keep]]
    if png is not None and Path(png).is_file():
        ims.append(Image.fromarray(to_uint8(load_image(png))))
    if not ims:
        raise InputError("no frames to make a GIF from")
    buf = io.BytesIO()
    durations = [GIF_FRAME_MS] * (len(ims) - 1) + [GIF_LAST_FRAME_MS]
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=durations, loop=0)
    return buf.getvalue()


def save_gif(out_dir: Path, record: dict[str, Any], frames: list[torch.Tensor]) -> Path:
    """Write ``<stem>.gif`` beside the record's PNG (atomically)."""
    png = Path(out_dir) / record["png"]
    path = png.with_suffix(".gif")
    write_bytes(optimisation_gif(frames, record, png), path)
    return path


def run_records(run, classifier: Classifier, model: str) -> list[dict[str, Any]]:
    """Per-row metadata of an optimisation run (everything except the scores)."""
    n = len(run.targets)
    history = _thin(run.activation)
    settings = preset_record(run.preset)
    decoder = decoder_record(run.preset.checkpoint) if run.preset.method == "pretrained" and run.preset.checkpoint else None
    out = []
    for i, t in enumerate(run.targets):
        out.append({
            "model": model,
            "method": run.preset.method,
            "preset": run.preset.name,
            "hyperparameters": settings,
            **({"decoder": decoder} if decoder else {}),
            "seed": run.seed,
            "steps": run.steps[i],
            "steps_max": run.preset.steps,
            "seconds": round(run.seconds / n, 3),
            "batch": n,
            "batch_seconds": round(run.seconds, 3),
            "device": run.device,
            "bf16": run.bf16,
            "cancelled": run.cancelled,
            "start_activation": round(run.start_activation[i], 6),
            "restart": run.restart[i] if run.restart else 0,
            "start_relu_activation": round(max(run.start_activation[i], 0.0), 6),
            "history_activation": [row[i] for row in history],
            "history_checks": [[s, None if p[i] != p[i] else round(p[i], 6)] for s, p in run.checks],
            "classifier_input_size": classifier.input_size,
        })
    return out
