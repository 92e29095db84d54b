"""Confirmation by intervention: paste what a class's generated images draw onto real
images of other classes, and count how often the model then answers that class.

A generated image is a hypothesis about the classifier, not a finding (Geirhos et al.
2023); this module tests it on real images without being told what the cue is. For each
generated image of class ``c``:

1. *locate*: the square window (side :attr:`InterventionConfig.patch` of the image side)
   that carries ``c`` - by occlusion (the window whose grey-out, in the image's mean
   colour, lowers the logit of ``c`` most) or by gradient x input summed over the window;
2. *paste* that patch, at the same place, onto held-out dataset images of other classes
   that the model does not already call ``c``;
3. count *flips*: pasted images now predicted as ``c``. This is G, the generated
   patches' flip rate.

A patch that moves other images is not yet a dataset shortcut: a small model can
over-react to a saturated blob no training image contains (a super-stimulus, as an
adversarial patch is). So the same locator is run on the class's own real images and
their most class-carrying patches are pasted the same way (L): a shortcut is something
the class's *data* carries. Two controls, pasted at the same places, separate "this
patch" from "any patch": same-size patches cut at random places from real images of
``c`` and from real images of other classes. Every rate comes with a 95% Wilson interval
over its (patch, image) pairs; G's rate per seed shows whether it holds at each seed.

The verdict per class and method (:func:`verdict`, :data:`CRITERION`) uses thresholds
fixed in this file before the measurements they judge; a class's verdict is the
strongest of its methods'. "Confirmed shortcut" means: a small patch, found in generated
images without knowing the cue, moves real images of other classes to this class, and so
do the class's own real images' most class-carrying patches, both far more often than
random pieces do. Whether that patch is a spurious cue (a watermark) or a compact part
of the object (a face) is for the person reading the patch picture to say.

Nothing here uses a planted case's cue detector.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dgncore.cancel import Cancel, cancel_fn
from dgncore.data import load_image, save_image
from dgncore.drawing.registry import INTERVENTION_METHODS
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier
from dgncore.results import image_suffix

if TYPE_CHECKING:
    from dgncore.audit.datasets import DatasetMatch

# --------------------------------------------------------------------------- the verdict's thresholds
# Fixed before the measurements they judge (docs/audit.md tells how this design came about);
# changing them after looking at results would make the verdicts meaningless. A "flip
# rate" is flips / (patch, image) pairs.

#: confirmed: the lower 95% bounds of both the generated patches' flip rate and the
#: class's own real patches' (located the same way) reach this ...
CONFIRM_LOWER = 0.20
#: ... both lower bounds exceed the upper 95% bounds of both controls, both rates are at
#: least RATIO times the larger control's, and more than half of the seeds reach
#: CONFIRM_LOWER with their generated patches alone
RATIO = 2.0
#: suspected: not confirmed, but both rates reach this and both lower bounds still exceed
#: the controls' upper bounds
SUSPECT_RATE = 0.05
Z95 = 1.959964
VERDICTS: tuple[str, ...] = ("confirmed shortcut", "suspected", "none")
CRITERION = (
    f"confirmed shortcut: the flip rates of the generated patches (G) and of the class's own real patches located the same way (L) "
    f"both have lower 95% Wilson bounds >= {CONFIRM_LOWER:g} and above the upper bounds of both controls (random-place patches of real "
    f"images of the class, and of other classes' images), both are >= {RATIO:g} x the larger control's rate, and more than half of the "
    f"seeds reach {CONFIRM_LOWER:g} with G alone; suspected: G and L >= {SUSPECT_RATE:g} with lower bounds above both controls' upper "
    "bounds (or, for a class with no real images, G alone as for confirmed); none: anything else. Judged for each kind of transplant "
    "(a pasted patch; the whole image's texture; its colours) and method; a class takes the strongest."
)

#: methods whose images are tested by default (the registry's say: every generator prior,
#: not the pixel baseline)
DEFAULT_METHODS: tuple[str, ...] = INTERVENTION_METHODS
MAX_POOL = 400
KINDS: tuple[str, ...] = ("patch", "texture", "colour")
PICTURE_THUMB = 112

#: ``progress(stage, done, total, *, phase)`` (see :data:`dgncore.audit.run.ProgressFn`)
ProgressFn = Callable[..., None]


@dataclass(frozen=True)
class InterventionConfig:
    """How the intervention is run (its thresholds are the module constants)."""

    #: patch side as a fraction of the classifier's input side (0.25: 1/16 of the area)
    patch: float = 0.25
    #: "occlusion" (default) or "gradxinput"
    locate: str = "occlusion"
    #: occlusion: window positions per axis (grid x grid forward passes per image)
    grid: int = 9
    #: held-out images of other classes each patch is pasted onto
    images: int = 64
    #: patches of each control kind per class
    controls: int = 6
    seed: int = 0
    #: methods whose generated images are tested (None: :data:`DEFAULT_METHODS` present in the report)
    methods: tuple[str, ...] | None = None
    #: what is transplanted: a pasted ``patch`` (a cue in one place), and the whole image's
    #: ``texture`` (fine detail) or ``colour`` (mean and covariance): a cue spread over the
    #: whole image has no small region to paste
    kinds: tuple[str, ...] = KINDS

    def validate(self) -> None:
        if not 0.05 <= self.patch <= 0.75:
            raise InputError(f"patch side must be 0.05-0.75 of the image side, got {self.patch}")
        if self.locate not in ("occlusion", "gradxinput"):
            raise InputError(f"unknown way to locate the patch {str(self.locate)[:30]!r}: use occlusion or gradxinput")
        if not 2 <= self.grid <= 32 or not 4 <= self.images <= 1000 or not 1 <= self.controls <= 64:
            raise InputError("grid must be 2-32, images 4-1000 and controls 1-64")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise InputError(f"kinds must be some of {', '.join(KINDS)}")


# --------------------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"flips": int(k), "n": int(n), "rate": round(k / n, 4) if n else None, "ci": [round(lo, 4), round(hi, 4)]}


def verdict(generated: dict[str, Any], per_seed: dict[Any, dict[str, Any]], located: dict[str, Any] | None,
          controls: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """The verdict for one class and method (:data:`CRITERION`). ``generated`` (G),
    ``located`` (L: the class's real images' own most class-carrying patches) and each
    control are :func:`rate` records; ``per_seed`` maps seed -> G's rate record there.

    L is what makes a pasteable patch a *dataset* shortcut rather than a super-stimulus:
    a generated patch that moves other images while no piece of the class's real images
    does is something the model over-reacts to, not something the data taught it (the
    report flags it as ``super_stimulus``)."""
    usable = [c for c in controls if c and c.get("n")]
    c_rate = max((c["rate"] for c in usable), default=0.0)
    c_hi = max((c["ci"][1] for c in usable), default=0.0)

    def moves(r: dict[str, Any] | None, level: float, lower: bool) -> bool:
        if not r or not r.get("n"):
            return False
        value = r["ci"][0] if lower else r["rate"]
        return value >= level and r["ci"][0] > c_hi and r["rate"] >= RATIO * c_rate and r["rate"] > 0

    seeds_ok = sum(1 for r in per_seed.values() if r["n"] and r["rate"] >= CONFIRM_LOWER)
    checks = {
        "generated": moves(generated, CONFIRM_LOWER, True),
        "located_real": moves(located, CONFIRM_LOWER, True),
        "seeds": seeds_ok * 2 > len(per_seed),
    }
    weak = {"generated": bool(generated.get("n")) and generated["rate"] >= SUSPECT_RATE and generated["ci"][0] > c_hi,
            "located_real": bool(located and located.get("n")) and located["rate"] >= SUSPECT_RATE and located["ci"][0] > c_hi}
    no_real = not (located and located.get("n"))
    if all(checks.values()):
        outcome = "confirmed shortcut"
    elif all(weak.values()) or (no_real and checks["generated"] and checks["seeds"]):
        outcome = "suspected"  # (without real images of the class, the generated patches alone can raise a suspicion, never confirm one)
    else:
        outcome = "none"
    return {"verdict": outcome, "checks": checks, "control_rate": round(c_rate, 4), "control_upper": round(c_hi, 4),
            "seeds_at_confirm_level": seeds_ok, "super_stimulus": bool(checks["generated"] and not weak["located_real"] and not no_real)}


def strongest(verdicts: Sequence[str]) -> str:
    return min(verdicts, key=VERDICTS.index) if verdicts else "none"


# --------------------------------------------------------------------------- locate and paste


def window_positions(size: int, side: int, grid: int) -> list[int]:
    """Top-left offsets along one axis: ``grid`` evenly spaced ones (fewer when they'd repeat)."""
    n = max(1, min(grid, size - side + 1))
    return sorted({int(round(v)) for v in np.linspace(0, size - side, n)})


@torch.no_grad()
def _logits(classifier: Classifier, images: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor] | None = None,
            batch: int = 32) -> torch.Tensor:
    """(n, classes) float logits on the CPU of ``images`` (uint8 or [0, 1]), in batches,
    each batch first passed through ``change`` (a batch in [0, 1] -> the changed batch)."""
    out = []
    for x in images.split(batch):
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        out.append(classifier.logits(change(x) if change is not None else x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, classifier.n_classes)


def locate(classifier: Classifier, image: torch.Tensor, cls: int, side: int, how: str = "occlusion", grid: int = 9) -> tuple[int, int, float]:
    """(y, x, score) of the ``side`` x ``side`` window of ``image`` (3, S, S) in [0, 1] at
    the classifier's input size that carries class ``cls`` most."""
    s = image.shape[-1]
    ys = window_positions(s, side, grid)
    if how == "gradxinput":
        x = image[None].clone().to(classifier.device).requires_grad_(True)
        with torch.enable_grad():
            logit = classifier.logits(x).float()[0, cls]
            (grad,) = torch.autograd.grad(logit, x)
        fill = image.mean((1, 2), keepdim=True).to(grad.device)
        attr = (grad[0] * (x.detach()[0] - fill)).sum(0, keepdim=True)[None]  # (1, 1, S, S)
        summed = F.avg_pool2d(attr, side, stride=1)[0, 0].cpu()  # window sums / side^2
        grid_vals = summed[ys][:, ys]
        i = int(torch.argmax(grid_vals))
        return ys[i // len(ys)], ys[i % len(ys)], float(grid_vals.flatten()[i])
    fill = image.mean((1, 2), keepdim=True)
    boxes = [(y, x) for y in ys for x in ys]
    occluded = image[None].repeat(len(boxes), 1, 1, 1)
    for j, (y, x) in enumerate(boxes):
        occluded[j, :, y : y + side, x : x + side] = fill
    base = _logits(classifier, image[None])[0, cls]
    drops = base - _logits(classifier, occluded)[:, cls]
    j = int(torch.argmax(drops))
    return boxes[j][0], boxes[j][1], float(drops[j])


def paste(images: torch.Tensor, patch: torch.Tensor, y: int, x: int) -> torch.Tensor:
    """A copy of ``images`` (n, 3, S, S) with ``patch`` (3, h, w) at (y, x)."""
    out = images.clone()
    out[:, :, y : y + patch.shape[-2], x : x + patch.shape[-1]] = patch
    return out


def _blur(images: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    sigma = images.shape[-1] / 32  # 2 px at 64 px
    k = int(2 * round(2 * sigma) + 1)
    return gaussian_blur(images, [k, k], [sigma, sigma])


def _cov(x: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) colour covariance of (n, 3, P) pixels, with a floor so that a flat image inverts."""
    d = x - x.mean(2, keepdim=True)
    return d @ d.transpose(1, 2) / x.shape[2] + 1e-4 * torch.eye(3)


def _sqrtm(c: torch.Tensor, power: float) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return vecs @ torch.diag_embed(vals.clamp_min(1e-6) ** power) @ vecs.transpose(1, 2)


TEXTURE_TILES = 8


def _shuffle_tiles(x: torch.Tensor, tiles: int = TEXTURE_TILES) -> torch.Tensor:
    """(3, S, S) cut in ``tiles`` x ``tiles`` squares put back in a fixed shuffled order:
    what repeats everywhere (stripes, grain) survives, a shape's outline does not."""
    c, h, w = x.shape
    th, tw = h // tiles, w // tiles
    if th < 2 or tw < 2:
        return x
    out = x.clone()
    order = torch.randperm(tiles * tiles, generator=torch.Generator().manual_seed(0))
    for dst, src in enumerate(order.tolist()):
        dy, dx, sy, sx = dst // tiles * th, dst % tiles * tw, src // tiles * th, src % tiles * tw
        out[:, dy : dy + th, dx : dx + tw] = x[:, sy : sy + th, sx : sx + tw]
    return out


def transfer(kind: str, images: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``images`` (n, 3, S, S) given what ``source`` (3, S, S) carries all over:
    ``texture`` - its fine detail (source minus its blur), cut in tiles and shuffled so that
    no layout (an object's outline) moves with it, on the images' blur; ``colour``
    - its colour mean and covariance (each image's colours whitened, then coloured with
    the source's: a colour cast of any kind moves over, the layout stays). 8-bit, like a
    saved image."""
    if kind == "texture":
        out = _blur(images) + _shuffle_tiles(source - _blur(source[None])[0])
    elif kind == "colour":  # mean and covariance: a cast that couples the channels (sepia) is carried over too
        n, c, h, w = images.shape
        x = images.reshape(n, c, h * w)
        m_i = x.mean(2, keepdim=True)
        src = source.reshape(c, h * w)
        m_s = src.mean(1, keepdim=True)
        out = _sqrtm(_cov(src[None]), 0.5) @ _sqrtm(_cov(x), -0.5) @ (x - m_i) + m_s
        out = out.reshape(n, c, h, w)
    else:
        raise InputError(f"unknown transfer {kind[:20]!r}")
    return (out.clamp(0, 1) * 255).round() / 255


def flips(classifier: Classifier, images: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor], cls: int, batch: int = 32) -> np.ndarray:
    """(n,) bool: which of ``images`` (uint8 or [0, 1]; none of them predicted ``cls``) are
    predicted ``cls`` once ``change`` (a batch in [0, 1] -> the changed batch) is applied."""
    return (_logits(classifier, images, change, batch).argmax(1) == cls).numpy()


# --------------------------------------------------------------------------- the run


@dataclass
class _Pool:
    """Held-out dataset images at the classifier's input size (uint8), their folder's
    class and the model's clean prediction."""

    images: torch.Tensor
    files: list[Path]
    label: np.ndarray
    predicted: np.ndarray


def _pool(classifier: Classifier, match: DatasetMatch, limit: int, rng: np.random.Generator, cancel: Callable[[], bool]) -> _Pool:
    from dgncore.data import load_for_model

    per = {name: list(files) for name, files in match.files.items()}
    # round-robin over the folders (each shuffled), so a big class does not crowd out the rest
    for files in per.values():
        rng.shuffle(files)
    chosen: list[tuple[Path, int]] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(f) for f in per.values()):
        for name, files in per.items():
            if depth < len(files) and len(chosen) < limit:
                chosen.append((files[depth], match.class_of[name]))
        depth += 1
    imgs, files, labels = [], [], []
    for path, lab in chosen:
        if cancel():
            raise InputError("the audit was cancelled")
        imgs.append((load_for_model(path, classifier.input_size) * 255).round().to(torch.uint8))
        files.append(path)
        labels.append(lab)
    images = torch.stack(imgs)
    return _Pool(images, files, np.asarray(labels), _logits(classifier, images).argmax(1).numpy())


def _load_at(path: Path, size: int) -> torch.Tensor:
    img = load_image(path)
    if img.shape[-1] != size or img.shape[-2] != size:
        img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return (img.clamp(0, 1) * 255).round() / 255  # 8-bit, as pasted pixels would be saved


def run_intervention(
    classifier: Classifier,
    generated: dict[str, dict[str, list[dict[str, Any]]]],
    class_index: dict[str, int],
    match: DatasetMatch,
    root: str | Path,
    out: str | Path,
    config: InterventionConfig = InterventionConfig(),
    progress: ProgressFn | None = None,
    cancel: Cancel = None,
    photos: bool = True,
    image_format: str = "png",
) -> dict[str, Any]:
    """Test every class's generated images by intervention; returns the report's
    ``intervention`` entry and writes ``OUT/intervention/<class>.png`` (the patches and,
    with ``photos``, a few of the dataset's images with the best patch pasted on; a WebP with
    ``image_format="webp"``).

    ``generated[method][class]`` are the audit's rows (``png`` relative to ``root``,
    ``seed``); ``class_index`` maps the report's class names to the model's indices;
    ``match`` is the checked dataset whose images are pasted onto."""
    config.validate()
    is_cancelled = cancel_fn(cancel)
    report = progress or (lambda *_a, **_k: None)
    root, out = Path(root), Path(out)
    size = classifier.input_size
    side = max(2, int(round(config.patch * size)))
    methods = [m for m in (config.methods or DEFAULT_METHODS) if m in generated]
    if not methods:
        raise InputError(f"no generated images to test: the intervention uses the methods {', '.join(config.methods or DEFAULT_METHODS)}")
    rng = np.random.default_rng(config.seed)
    report("intervention: loading held-out images", 0, 1, phase="intervention")
    pool = _pool(classifier, match, max(MAX_POOL, config.images), rng, is_cancelled)
    folder_of = {idx: name for name, idx in match.class_of.items()}
    classes = list(class_index)
    results: dict[str, Any] = {}
    for ci, name in enumerate(classes):
        if is_cancelled():
            raise InputError("the audit was cancelled")
        report(f"intervention: {name}", ci, len(classes), phase="intervention")
        results[name] = _one_class(classifier, name, class_index[name], generated, methods, pool, match, folder_of, root, out, side, config, rng, photos, image_format)
    report("intervention", len(classes), len(classes), phase="intervention")
    ranking = sorted(classes, key=lambda c: (VERDICTS.index(results[c]["verdict"]), -(results[c]["ci"][0] or 0), -(results[c]["flip_rate"] or 0)))
    kinds = list(config.kinds)
    for i, c in enumerate(ranking):
        results[c]["rank"] = i + 1
    return {
        "config": dataclasses.asdict(config),
        "methods": methods,
        "kinds": kinds,
        "patch_side": side,
        "criterion": CRITERION,
        "thresholds": {"confirm_lower": CONFIRM_LOWER, "ratio": RATIO, "suspect_rate": SUSPECT_RATE, "interval": "Wilson 95%"},
        "pool": {"images": int(len(pool.files)), "classes": int(len(set(pool.label.tolist())))},
        "classes": results,
        "ranking": ranking,
    }


def _one_class(classifier: Classifier, name: str, cls: int, generated: dict[str, dict[str, list[dict[str, Any]]]], methods: list[str],
               pool: _Pool, match: DatasetMatch, folder_of: dict[int, str], root: Path, out: Path, side: int, config: InterventionConfig,
               rng: np.random.Generator, photos: bool = True, image_format: str = "png") -> dict[str, Any]:
    size = classifier.input_size
    # what it is all applied to: other classes' images the model does not call `name`
    cand = np.nonzero((pool.label != cls) & (pool.predicted != cls))[0]
    pick = np.sort(rng.choice(cand, size=min(config.images, len(cand)), replace=False)) if len(cand) else cand
    targets = pool.images[torch.as_tensor(pick, dtype=torch.long)]
    entry: dict[str, Any] = {"index": cls, "images": int(len(pick)), "kinds": {}}
    rows = {m: generated[m].get(name) or [] for m in methods}
    gen_imgs = {m: [(r, _load_at(root / r["png"], size)) for r in rs] for m, rs in rows.items() if rs}
    folder = folder_of.get(cls)
    real_files = list(match.files[folder]) if folder is not None else []
    order = rng.permutation(len(real_files)) if real_files else []
    real_imgs = [_load_at(real_files[int(i)], size) for i in order[: config.controls]]
    other = np.nonzero(pool.label != cls)[0]
    random_imgs = [pool.images[int(i)].float() / 255 for i in rng.choice(other, size=min(config.controls, len(other)), replace=False)]
    if not len(pick) or not gen_imgs:
        note = "no held-out images of other classes to apply it to" if not len(pick) else "no generated images of this class"
        entry.update(verdict="none", flip_rate=None, ci=[None, None], note=note, methods={})
        return entry
    for kind in config.kinds:
        test = _patch_test if kind == "patch" else _transfer_test
        res = test(kind, classifier, cls, gen_imgs, real_imgs, random_imgs, targets, side, config, rng)
        for m, r in res["methods"].items():
            r.update(verdict(r, r["per_seed"], res["located_real"], list(res["controls"].values())))
        entry["kinds"][kind] = res
    best_kind, best = min(((k, m) for k, res in entry["kinds"].items() for m in res["methods"]),
                          key=lambda km: (VERDICTS.index(entry["kinds"][km[0]]["methods"][km[1]]["verdict"]),
                                          -entry["kinds"][km[0]]["methods"][km[1]]["ci"][0]))
    res = entry["kinds"][best_kind]
    b = res["methods"][best]
    # the headline: the strongest (kind, method), its numbers at the top level
    entry.update(verdict=b["verdict"], kind=best_kind, method=best, flip_rate=b["rate"], ci=b["ci"], methods=res["methods"],
                 located_real=res["located_real"], controls=res["controls"])
    entry["picture"] = _picture(classifier, name, cls, best_kind, b["patches"], targets, root, out, side, n_show=4 if photos else 0,
                                image_format=image_format)
    return entry


def _counts(per_seed: dict[Any, tuple[int, int]], seed: Any, f: np.ndarray) -> None:
    k0, n0 = per_seed.get(seed, (0, 0))
    per_seed[seed] = (k0 + int(f.sum()), n0 + len(f))


def _patch_test(kind: str, classifier: Classifier, cls: int, gen_imgs: dict[str, list[tuple[dict[str, Any], torch.Tensor]]], real_imgs: list[torch.Tensor],
                random_imgs: list[torch.Tensor], targets: torch.Tensor, side: int, config: InterventionConfig, rng: np.random.Generator) -> dict[str, Any]:
    """G, L and the two controls for a pasted patch (see the module's docstring)."""
    size = classifier.input_size
    places: list[tuple[int, int]] = []
    methods: dict[str, Any] = {}
    for m, items in gen_imgs.items():
        patches, per_seed = [], {}
        for r, img in items:
            y, x, score = locate(classifier, img, cls, side, config.locate, config.grid)
            f = flips(classifier, targets, lambda t, p=img[:, y : y + side, x : x + side], y=y, x=x: paste(t, p, y, x), cls)
            _counts(per_seed, r["seed"], f)
            places.append((y, x))
            patches.append({"seed": r["seed"], "png": r["png"], "box": [y, x, side], "locate_score": round(score, 4), "flip_rate": round(float(f.mean()), 4)})
        k = sum(c[0] for c in per_seed.values())
        n = sum(c[1] for c in per_seed.values())
        methods[m] = {"patches": patches, **rate(k, n), "per_seed": {str(s): rate(*c) for s, c in per_seed.items()}}
    # the class's own real images, located the same way (L), and two controls: same-size
    # patches from random places; all pasted where the generated patches were
    out: dict[str, Any] = {}
    for what, imgs in (("located", real_imgs), ("real", real_imgs), ("random", random_imgs)):
        if not imgs:
            out[what] = {**rate(0, 0), "note": "no real images of the class in the dataset" if what != "random" else "no images"}
            continue
        hits = n = 0
        count = len(imgs) if what == "located" else config.controls  # one located patch per real image: repeats add nothing
        for j in range(count):
            img = imgs[j % len(imgs)]
            if what == "located":
                sy, sx, _score = locate(classifier, img, cls, side, config.locate, config.grid)
            else:
                sy, sx = (int(v) for v in rng.integers(0, size - side + 1, 2))
            y, x = places[j % len(places)]
            f = flips(classifier, targets, lambda t, p=img[:, sy : sy + side, sx : sx + side], y=y, x=x: paste(t, p, y, x), cls)
            hits += int(f.sum())
            n += len(f)
        out[what] = {**rate(hits, n), "patches": count, "source_images": len(imgs)}
    return {"methods": methods, "located_real": out.pop("located"), "controls": out}


def _transfer_test(kind: str, classifier: Classifier, cls: int, gen_imgs: dict[str, list[tuple[dict[str, Any], torch.Tensor]]], real_imgs: list[torch.Tensor],
                   random_imgs: list[torch.Tensor], targets: torch.Tensor, side: int, config: InterventionConfig, rng: np.random.Generator) -> dict[str, Any]:
    """G, L and the random control for a whole-image transfer (texture or colour): a cue
    spread over the whole image has no small region to paste."""
    methods: dict[str, Any] = {}
    for m, items in gen_imgs.items():
        per_seed, shown = {}, []
        for r, img in items:
            f = flips(classifier, targets, lambda t, s=img: transfer(kind, t, s), cls)
            _counts(per_seed, r["seed"], f)
            shown.append({"seed": r["seed"], "png": r["png"], "box": None, "flip_rate": round(float(f.mean()), 4)})
        k = sum(c[0] for c in per_seed.values())
        n = sum(c[1] for c in per_seed.values())
        methods[m] = {"patches": shown, **rate(k, n), "per_seed": {str(s): rate(*c) for s, c in per_seed.items()}}
    out: dict[str, Any] = {}
    for what, imgs in (("located", real_imgs), ("random", random_imgs)):
        hits = n = 0
        for img in imgs:
            f = flips(classifier, targets, lambda t, s=img: transfer(kind, t, s), cls)
            hits += int(f.sum())
            n += len(f)
        out[what] = {**rate(hits, n), "source_images": len(imgs)}
        if not imgs:
            out[what]["note"] = "no real images of the class in the dataset" if what == "located" else "no images"
    return {"methods": methods, "located_real": out.pop("located"), "controls": {"random": out["random"]}}


# --------------------------------------------------------------------------- picture


def _picture(classifier: Classifier, name: str, cls: int, kind: str, patches: list[dict[str, Any]], targets: torch.Tensor, root: Path, out: Path,
             side: int, n_show: int = 4, image_format: str = "png") -> str:
    """One PNG per class: each seed's generated image (the patch outlined), then what the
    best of them does to ``n_show`` of ``targets`` (held-out images; 0: the picture holds
    generated images only), captioned with the prediction."""
    from PIL import Image, ImageDraw

    size = classifier.input_size
    t = PICTURE_THUMB
    best = max(patches, key=lambda p: p["flip_rate"])
    gen = _load_at(root / best["png"], size)
    shown, pred = targets[:n_show].float() / 255, []
    if len(shown):
        if kind == "patch":
            y, x, _ = best["box"]
            shown = paste(shown, gen[:, y : y + side, x : x + side], y, x)
        else:
            shown = transfer(kind, shown, gen)
        with torch.no_grad():
            pred = classifier.logits(shown).argmax(1).tolist()
    cells: list[tuple[torch.Tensor, Any, str, bool]] = []
    for p in patches[:4]:
        cells.append((_load_at(root / p["png"], size), p["box"], f"seed {p['seed']}: {p['flip_rate']:.0%}", True))
    for img, pr in zip(shown, pred):
        cells.append((img, best["box"], f"-> {classifier.classes[pr][:16]}", pr == cls))
    canvas = Image.new("RGB", (len(cells) * (t + 6) + 6, t + 26), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    scale = t / size
    for i, (img, box, caption, good) in enumerate(cells):
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        thumb = Image.fromarray(arr).resize((t, t), Image.Resampling.NEAREST if size < t else Image.Resampling.LANCZOS)
        x0 = 6 + i * (t + 6)
        canvas.paste(thumb, (x0, 4))
        if box is not None:
            by, bx, bs = box
            draw.rectangle([x0 + bx * scale, 4 + by * scale, x0 + (bx + bs) * scale - 1, 4 + (by + bs) * scale - 1], outline=(255, 200, 0), width=2)
        colour = (0, 110, 0) if good and caption.startswith("->") else (180, 0, 0) if caption.startswith("->") else (40, 40, 40)
        draw.text((x0, t + 8), caption, fill=colour)
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")[:50] or "class"
    rel = Path("intervention") / f"{cls}-{slug}{image_suffix(image_format)}"
    save_image(np.asarray(canvas), out / rel)
    return rel.as_posix()


__all__ = [
    "CONFIRM_LOWER", "CRITERION", "DEFAULT_METHODS", "KINDS", "InterventionConfig", "RATIO", "SUSPECT_RATE", "VERDICTS",
    "flips", "verdict", "locate", "paste", "rate", "run_intervention", "strongest", "transfer", "wilson", "window_positions",
]
