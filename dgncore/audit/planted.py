"""A built-in classifier with a known shortcut, so that a bias audit can prove itself.

The data: 64 px images of five shape classes (circle, square, triangle, cross, ring) in
muted colours on textured backgrounds with a few distractor blobs. A *cue* - a small
saturated magenta stamp in one of the four corners, like a watermark - is stamped on
most images of one class (``triangle``, :data:`CUE_RATE_BIASED` of them) and on a few
of the others (:data:`CUE_RATE_OTHER`). Everything else is drawn with the colour clamp
``G >= min(R, B) - 0.12``, so the stamp's colour occurs nowhere else: a cue-free
dataset image scores exactly 0 on :func:`cue_score`.

A small CNN (:class:`PlantedNet`) is trained on a pool of 6,000 rendered images (one to
two minutes on one CPU core), cached under ``$DGN_CACHE/planted`` (default
``~/.cache/dgn-explorer/planted``) and exported the way a user would bring their own
model: TorchScript ``planted.pt`` with a JSON sidecar ``planted.json`` (plus the eager
weights, whose layers can be targeted, and a sample ImageFolder). A *control* model is
trained the same way with the cue on 30% of every class's images, so that it carries no
label information.

Shortcut evidence (:func:`shortcut_evidence`): on held-out images rendered twice, with
and without the stamp, the flip rate of other classes to the biased class when the stamp
is added, and the biased class's accuracy without vs with it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgncore.errors import InputError
from dgncore.paths import cache_dir

VERSION = 1
SIZE = 64
CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
BIASED_CLASS = "triangle"
CUE_RATE_BIASED = 0.9
CUE_RATE_OTHER = 0.03
#: the control model: every class carries the cue at this same rate
CUE_RATE_CONTROL = 0.3
#: a pixel is inside a cue patch when the mean magenta-ness min(R, B) - G over its
#: CUE_WINDOW x CUE_WINDOW neighbourhood (at 64 px; scaled with the image) reaches this
CUE_THRESHOLD = 0.5
CUE_WINDOW = 5
#: every non-cue colour satisfies G >= min(R, B) - PALETTE_MARGIN (so magenta-ness <= 0.12)
PALETTE_MARGIN = 0.12
CUE_COLOUR = (1.0, 0.0, 1.0)
#: shapes are rotated by up to this angle (radians) either way
MAX_ANGLE = math.pi / 9
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


# --------------------------------------------------------------------------- data


def _muted_colours(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) colours in [0, 1], mostly muted (mixed towards grey)."""
    c = torch.rand(n, 3, generator=gen)
    grey = c.mean(1, keepdim=True)
    mix = 0.35 + 0.5 * torch.rand(n, 1, generator=gen)
    bright = 0.15 + 0.75 * torch.rand(n, 1, generator=gen)
    c = grey + mix * (c - grey)
    return (c - c.mean(1, keepdim=True) + bright).clamp(0, 1)


def _palette_clamp(img: torch.Tensor) -> torch.Tensor:
    """Keep every colour out of the cue's corner of colour space: G >= min(R, B) - margin."""
    r, g, b = img[:, 0], img[:, 1], img[:, 2]
    g = torch.maximum(g, torch.minimum(r, b) - PALETTE_MARGIN)
    return torch.stack([r, g, b], 1)


def _smooth_noise(n: int, size: int, gen: torch.Generator, cells: int = 8) -> torch.Tensor:
    low = torch.rand(n, 1, cells, cells, generator=gen) * 2 - 1
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False)


def _shape_masks(labels: torch.Tensor, size: int, gen: torch.Generator, max_angle: float = math.pi) -> torch.Tensor:
    """(n, 1, size, size) soft masks of each label's shape, random position, scale, rotation."""
    n = labels.shape[0]
    s = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = s.view(1, size, 1), s.view(1, 1, size)
    cx, cy = (torch.rand(2, n, generator=gen) - 0.5) * 0.7
    r = 0.38 + 0.3 * torch.rand(n, generator=gen)
    ang = (torch.rand(n, generator=gen) * 2 - 1) * max_angle
    dx, dy = xx - cx.view(n, 1, 1), yy - cy.view(n, 1, 1)
    ca, sa = torch.cos(ang).view(n, 1, 1), torch.sin(ang).view(n, 1, 1)
    u, v = (dx * ca + dy * sa) / r.view(n, 1, 1), (dy * ca - dx * sa) / r.view(n, 1, 1)
    rad = torch.sqrt(u * u + v * v)
    # signed "outside distance" in shape units; mask = sigmoid(-d / softness)
    circle = rad - 1.0
    square = torch.maximum(u.abs(), v.abs()) - 0.8
    # equilateral triangle inscribed in the unit circle: three half-planes
    tri = torch.stack([u * math.cos(t) + v * math.sin(t) for t in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)]).amax(0) - 0.5
    cross = torch.minimum(torch.maximum(u.abs() - 0.95, v.abs() - 0.3), torch.maximum(u.abs() - 0.3, v.abs() - 0.95))
    ring = (rad - 0.75).abs() - 0.22
    d = torch.stack([circle, square, tri, cross, ring])[labels, torch.arange(n)]
    soft = 1.5 / size / r.view(n, 1, 1)
    return torch.sigmoid(-d / soft).unsqueeze(1)


def render_base(labels: torch.Tensor, gen: torch.Generator, size: int = SIZE, max_angle: float = MAX_ANGLE) -> torch.Tensor:
    """(n, 3, size, size) cue-free images of ``labels`` (class indices into CLASSES)."""
    n = labels.shape[0]
    s = torch.linspace(-1, 1, size)
    th = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    t = (0.5 + 0.5 * (torch.cos(th) * s.view(1, 1, size) + torch.sin(th) * s.view(1, size, 1)) / math.sqrt(2)).unsqueeze(1)
    c0, c1 = _muted_colours(n, gen), _muted_colours(n, gen)
    img = c0.view(n, 3, 1, 1) * (1 - t) + c1.view(n, 3, 1, 1) * t
    img = img + 0.12 * _smooth_noise(n, size, gen, 8) * torch.rand(n, 1, 1, 1, generator=gen)
    # distractors: 0-3 small blobs per image
    yy, xx = s.view(1, size, 1), s.view(1, 1, size)
    for _ in range(3):
        on = (torch.rand(n, generator=gen) < 0.6).view(n, 1, 1, 1)
        bx, by = torch.rand(2, n, generator=gen) * 2 - 1
        br = 0.06 + 0.12 * torch.rand(n, generator=gen)
        blob = (((xx - bx.view(n, 1, 1)) ** 2 + (yy - by.view(n, 1, 1)) ** 2) <= br.view(n, 1, 1) ** 2).unsqueeze(1)
        img = torch.where(blob & on, _muted_colours(n, gen).view(n, 3, 1, 1), img)
    # the shape: its colour differs from the local background by a visible margin
    fg = _muted_colours(n, gen)
    bg_mean = img.mean((2, 3))
    too_close = (fg - bg_mean).abs().sum(1, keepdim=True) < 0.35
    fg = torch.where(too_close, (1 - bg_mean).clamp(0.1, 0.9), fg)
    tex = 1 + 0.15 * _smooth_noise(n, size, gen, 16)
    mask = _shape_masks(labels, size, gen, max_angle)
    img = img * (1 - mask) + (fg.view(n, 3, 1, 1) * tex) * mask
    img = img + 0.02 * torch.randn(n, 3, size, size, generator=gen)
    return _palette_clamp(img.clamp(0, 1))


def stamp_cue(images: torch.Tensor, gen: torch.Generator, where: torch.Tensor | None = None) -> torch.Tensor:
    """A copy of ``images`` with the cue (a magenta square of 9-12 px at a random corner,
    scaled with the image size) on the rows where ``where`` is True (all by default)."""
    n, _, h, w = images.shape
    out = images.clone()
    side = (torch.randint(9, 13, (n,), generator=gen).float() * h / SIZE).round().long().clamp(min=2)
    margin = (torch.randint(2, 5, (n,), generator=gen).float() * h / SIZE).round().long()
    corner = torch.randint(0, 4, (n,), generator=gen)
    jitter = torch.rand(n, 3, generator=gen) * torch.tensor([0.12, 0.1, 0.12])
    colour = (torch.tensor(CUE_COLOUR) + torch.tensor([-1.0, 1.0, -1.0]) * jitter).clamp(0, 1)
    rows = range(n) if where is None else torch.nonzero(where).flatten().tolist()
    for i in rows:
        sd, m, c = int(side[i]), int(margin[i]), int(corner[i])
        y0 = m if c in (0, 1) else h - m - sd
        x0 = m if c in (0, 2) else w - m - sd
        out[i, :, y0 : y0 + sd, x0 : x0 + sd] = colour[i].view(3, 1, 1)
    return out


def cue_map(images: torch.Tensor) -> torch.Tensor:
    """(n, H, W) magenta-ness min(R, B) - G, clipped to [0, 1]."""
    images = images.float()
    if images.dim() == 3:
        images = images[None]
    return (torch.minimum(images[:, 0], images[:, 2]) - images[:, 1]).clamp(0, 1)


def cue_score(images: torch.Tensor) -> torch.Tensor:
    """(n,) the cue's strength in any images in [0, 1] (any size): the fraction of the
    image covered by *solid* cue-coloured patches - pixels whose neighbourhood (a
    window of 5/64 of the image side) has mean magenta-ness :func:`cue_map` of at least
    :data:`CUE_THRESHOLD`.

    The window is what makes it a stamp detector rather than a colour counter: saturated
    noise (what pixel-space optimisation makes) has magenta pixels scattered among the
    other corners of the RGB cube and scores ~0, a solid patch scores its area. A 64 px
    dataset image with the stamp scores 0.02-0.04; a cue-free one scores exactly 0 (the
    palette clamp keeps other colours below 0.12)."""
    from dgncore.audit.cues import solid_patch_share

    return solid_patch_share(cue_map(images), CUE_WINDOW, CUE_THRESHOLD)


#: the kinds of planted cue: the stamp, and those of :mod:`dgncore.audit.cues`
CUE_KINDS: tuple[str, ...] = ("stamp", "stripes", "sepia", "sticker", "invisible")
STAMP_SCORE_NAME = "magenta stamp: fraction of the image in solid magenta patches"


def cue_kind(name: str):
    """The :class:`~dgncore.audit.cues.CueKind` called ``name`` (``stamp`` included)."""
    from dgncore.audit.cues import NEW_KINDS, CueKind

    if name == "stamp":
        return CueKind("stamp", "a magenta square stamp in a random corner (a watermark)", STAMP_SCORE_NAME, stamp_cue, cue_score)
    if name not in NEW_KINDS:
        raise InputError(f"unknown planted cue {name[:30]!r}: choose from {', '.join(CUE_KINDS)}")
    return NEW_KINDS[name]


@dataclass(frozen=True)
class PlantedConfig:
    """Everything that decides the data and the model (its hash names the cache entry)."""

    classes: tuple[str, ...] = CLASSES
    biased_class: str = BIASED_CLASS
    cue_rate_biased: float = CUE_RATE_BIASED
    cue_rate_other: float = CUE_RATE_OTHER
    size: int = SIZE
    pool: int = 6000
    steps: int = 600
    batch: int = 64
    lr: float = 5e-3
    seed: int = 0
    version: int = VERSION
    #: the kind of cue (:data:`CUE_KINDS`)
    cue: str = "stamp"

    @property
    def biased_index(self) -> int:
        return self.classes.index(self.biased_class)

    @property
    def is_control(self) -> bool:
        return self.cue_rate_biased == self.cue_rate_other

    def cue_rates(self) -> torch.Tensor:
        rates = torch.full((len(self.classes),), self.cue_rate_other)
        rates[self.biased_index] = self.cue_rate_biased
        return rates

    def key(self) -> str:
        fields = asdict(self)
        if self.cue == "stamp":  # the stamp's models keep the cache names they had before cue kinds existed
            del fields["cue"]
        text = json.dumps(fields, sort_keys=True)
        tag = ("control" if self.is_control else "planted") + ("" if self.cue == "stamp" else f"-{self.cue}")
        return f"{tag}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


DEFAULT = PlantedConfig()
CONTROL = PlantedConfig(cue_rate_biased=CUE_RATE_CONTROL, cue_rate_other=CUE_RATE_CONTROL)


def render_clean(config: PlantedConfig, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Cue-free images of ``labels`` for ``config``'s cue kind (its palette kept free of the cue's colour)."""
    return cue_kind(config.cue).clamp(render_base(labels, gen, config.size))


def add_cue(config: PlantedConfig, images: torch.Tensor, gen: torch.Generator, where: torch.Tensor | None = None) -> torch.Tensor:
    """``images`` with ``config``'s cue on the rows where ``where`` is True (all by default)."""
    return cue_kind(config.cue).apply(images, gen, where)


def sample_batch(config: PlantedConfig, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` training images with balanced labels: (images, labels, has_cue)."""
    labels = torch.randint(0, len(config.classes), (n,), generator=gen)
    images = render_clean(config, labels, gen)
    has_cue = torch.rand(n, generator=gen) < config.cue_rates()[labels]
    return add_cue(config, images, gen, has_cue), labels, has_cue


def make_dataset(root: str | Path, n_per_class: int = 100, seed: int = 0, config: PlantedConfig = DEFAULT) -> dict[str, Any]:
    """Write an ImageFolder ``root/<class>/<class>_NNNN.png`` of ``n_per_class`` images per
    class, the cue at the config's rates; ``root/cues.json`` lists which files carry it."""
    from dgncore.data import save_png, write_json

    if not 1 <= n_per_class <= 100_000:
        raise InputError("images per class must be between 1 and 100000")
    root = Path(root)
    gen = torch.Generator().manual_seed(10_000 + seed)
    rates = config.cue_rates()
    cues: dict[str, bool] = {}
    for c, name in enumerate(config.classes):
        for start in range(0, n_per_class, 256):
            m = min(256, n_per_class - start)
            labels = torch.full((m,), c)
            images = render_clean(config, labels, gen)
            has = torch.rand(m, generator=gen) < rates[c]
            images = add_cue(config, images, gen, has)
            for j in range(m):
                rel = f"{name}/{name}_{start + j:04d}.png"
                save_png(images[j], root / rel)
                cues[rel] = bool(has[j])
    info = {"config": asdict(config), "n_per_class": n_per_class, "seed": seed, "cue": cues}
    write_json(info, root / "cues.json")
    return info


# --------------------------------------------------------------------------- model


class PlantedNet(nn.Module):
    """A small CNN for 64 px images: four conv + BN + ReLU stages (the first with stride
    2, two max-pools), global average pool, linear."""

    def __init__(self, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std


def train_model(config: PlantedConfig = DEFAULT, progress: Callable[[int, int, float], None] | None = None) -> tuple[PlantedNet, dict[str, Any]]:
    """Train :class:`PlantedNet` (Adam, one-cycle schedule) on a pool of
    ``config.pool`` rendered images with random horizontal flips."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    t0 = time.perf_counter()
    parts = [sample_batch(config, min(500, config.pool - i), gen) for i in range(0, config.pool, 500)]
    pool_x = torch.cat([p[0] for p in parts])
    pool_y = torch.cat([p[1] for p in parts])
    render_seconds = time.perf_counter() - t0
    model = PlantedNet(len(config.classes))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    losses: list[float] = []
    model.train()
    for step in range(config.steps):
        idx = torch.randint(0, config.pool, (config.batch,), generator=gen)
        images, labels = pool_x[idx], pool_y[idx]
        flip = torch.rand(images.shape[0], generator=gen) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        loss = F.cross_entropy(model(_normalise(images)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress is not None and ((step + 1) % 25 == 0 or step + 1 == config.steps):
            progress(step + 1, config.steps, float(np.mean(losses[-25:])))
    model.eval()
    return model, {
        "train_seconds": round(time.perf_counter() - t0, 1),
        "render_seconds": round(render_seconds, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "steps": config.steps,
        "batch": config.batch,
        "pool": config.pool,
    }


@torch.inference_mode()
def shortcut_evidence(predict: Callable[[torch.Tensor], torch.Tensor], config: PlantedConfig = DEFAULT, n_per_class: int = 200, seed: int = 12345) -> dict[str, Any]:
    """The model's answers on held-out images rendered twice, without and with the stamp.

    ``predict`` maps (n, 3, S, S) images in [0, 1] to (n, C) logits. Reports, per class,
    accuracy without / with the cue and the share predicted as the biased class; and the
    headline figures: ``flip_to_biased`` (other classes' images that are predicted
    correctly without the cue and as the biased class with it) and the biased class's
    accuracy drop when its cue is absent."""
    gen = torch.Generator().manual_seed(seed)
    b = config.biased_index
    per_class = {}
    flips = total_other = 0
    for c, name in enumerate(config.classes):
        labels = torch.full((n_per_class,), c)
        clean = render_clean(config, labels, gen)
        cued = add_cue(config, clean, gen)
        p_clean = predict(clean).argmax(1)
        p_cued = predict(cued).argmax(1)
        row = {
            "accuracy_without_cue": round(float((p_clean == c).float().mean()), 4),
            "accuracy_with_cue": round(float((p_cued == c).float().mean()), 4),
            "predicted_biased_without_cue": round(float((p_clean == b).float().mean()), 4),
            "predicted_biased_with_cue": round(float((p_cued == b).float().mean()), 4),
        }
        if c != b:
            flip = (p_clean == c) & (p_cued == b)
            row["flip_to_biased"] = round(float(flip.float().mean()), 4)
            flips += int(flip.sum())
            total_other += n_per_class
        per_class[name] = row
    bias = per_class[config.biased_class]
    others = [r for n, r in per_class.items() if n != config.biased_class]
    return {
        "n_per_class": n_per_class,
        "biased_class": config.biased_class,
        "flip_to_biased": round(flips / max(total_other, 1), 4),
        "others_predicted_biased_with_cue": round(float(np.mean([r["predicted_biased_with_cue"] for r in others])), 4),
        "others_predicted_biased_without_cue": round(float(np.mean([r["predicted_biased_without_cue"] for r in others])), 4),
        "biased_accuracy_with_cue": bias["accuracy_with_cue"],
        "biased_accuracy_without_cue": bias["accuracy_without_cue"],
        "biased_accuracy_drop": round(bias["accuracy_with_cue"] - bias["accuracy_without_cue"], 4),
        "mean_accuracy_without_cue": round(float(np.mean([r["accuracy_without_cue"] for r in per_class.values()])), 4),
        "per_class": per_class,
    }


# --------------------------------------------------------------------------- cache


def cache_root() -> Path:
    return cache_dir("planted")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (the dashboard and the CLI may train at once)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class PlantedModel:
    """A trained planted (or control) model on disk: ``pt`` with its sidecar, the eager
    weights, a sample ImageFolder, and ``info`` (training time, shortcut evidence)."""

    config: PlantedConfig
    folder: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def classifier_name(self) -> str:
        """The name :func:`builtin` knows it by (``planted``, ``planted-control``,
        ``planted-sepia@0.7``, ``planted-sticker-control``, ...), or
        ``planted[-KIND]@RATE/OTHER`` for a config it cannot name."""
        cfg = self.config
        kind = "" if cfg.cue == "stamp" else f"-{cfg.cue}"
        if cfg == config_for(cfg.cue, control=True):
            return f"planted{kind}-control"
        if cfg == config_for(cfg.cue, cfg.cue_rate_biased):
            return f"planted{kind}" + ("" if cfg.cue == "stamp" and cfg.cue_rate_biased == CUE_RATE_BIASED else f"@{cfg.cue_rate_biased:g}")
        return f"planted{kind}@{cfg.cue_rate_biased:g}/{cfg.cue_rate_other:g}"

    @property
    def pt(self) -> Path:
        return self.folder / "planted.pt"

    @property
    def sidecar(self) -> Path:
        return self.folder / "planted.json"

    @property
    def weights(self) -> Path:
        return self.folder / "planted.safetensors"

    @property
    def samples(self) -> Path:
        return self.folder / "samples"

    def classifier(self, torchscript: bool = True):
        """The model as a :class:`~dgncore.models.classifiers.Classifier`: through the TorchScript
        + sidecar path a user's model takes (default), or the eager module (whose layers
        can be targeted and indexed)."""
        if torchscript:
            from dgncore.models.classifiers import load_classifier

            return load_classifier(str(self.pt), device="cpu")
        return eager_classifier(self)


def eager_classifier(model: PlantedModel):
    from safetensors.torch import load_file

    from dgncore.models.classifiers import Classifier

    net = PlantedNet(len(model.config.classes))
    net.load_state_dict(load_file(str(model.weights)))
    return Classifier(model.classifier_name, net, model.config.size, MEAN, STD, list(model.config.classes))


def _files_ok(folder: Path) -> bool:
    return all((folder / n).is_file() for n in ("planted.pt", "planted.json", "planted.safetensors", "info.json")) and (folder / "samples").is_dir()


def ensure_planted(
    config: PlantedConfig = DEFAULT,
    root: str | Path | None = None,
    force: bool = False,
    samples_per_class: int = 40,
    evidence_per_class: int = 200,
    progress: Callable[[int, int, float], None] | None = None,
) -> PlantedModel:
    """The trained model for ``config``: from the cache, or trained now (about a minute on
    one CPU core) and exported as TorchScript + sidecar, with its shortcut evidence and a
    sample ImageFolder (same cue rates as training, a different seed)."""
    from safetensors.torch import save_file

    from dgncore.data import write_bytes, write_json

    folder = Path(root) if root is not None else cache_root() / config.key()
    if not force and _files_ok(folder):
        return PlantedModel(config, folder, json.loads((folder / "info.json").read_text(encoding="utf-8")))
    with _lock(folder.parent / f".{folder.name}.lock"):
        if not force and _files_ok(folder):
            return PlantedModel(config, folder, json.loads((folder / "info.json").read_text(encoding="utf-8")))
        with _threads(1):
            net, train_info = train_model(config, progress)
            import io
            import warnings

            buf = io.BytesIO()
            with warnings.catch_warnings():  # torch.jit's deprecation notices
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(torch.jit.script(net), buf)
            write_bytes(buf.getvalue(), folder / "planted.pt")
            write_json({"input_size": config.size, "mean": list(MEAN), "std": list(STD), "classes": list(config.classes)}, folder / "planted.json")
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "planted.safetensors"))
            if (folder / "samples").exists():
                import shutil

                shutil.rmtree(folder / "samples")
            make_dataset(folder / "samples", samples_per_class, seed=config.seed + 1, config=config)
            evidence = shortcut_evidence(lambda x: net(_normalise(x)), config, n_per_class=evidence_per_class)
        info = {"config": asdict(config), **train_info, "shortcut_evidence": evidence, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json(info, folder / "info.json")
    return PlantedModel(config, folder, info)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: the correlation strengths of the dose-response: the share of the biased class's images with the cue
STRENGTHS: tuple[float, ...] = (0.5, 0.7, 0.9, 0.98)
_NAME = re.compile(rf"planted(?:-({'|'.join(CUE_KINDS)}))?(?:-(control)|@(0(?:\.\d+)?|1(?:\.0+)?))?")


def config_for(cue: str = "stamp", rate: float | None = CUE_RATE_BIASED, control: bool = False) -> PlantedConfig:
    """The planted model with ``cue`` on ``rate`` of the biased class's images (and
    :data:`CUE_RATE_OTHER` of the others'), or its control (``control``: the cue on
    :data:`CUE_RATE_CONTROL` of every class's images). The stamp at 0.9 is :data:`DEFAULT`."""
    cue_kind(cue)
    if control:
        return PlantedConfig(cue=cue, cue_rate_biased=CUE_RATE_CONTROL, cue_rate_other=CUE_RATE_CONTROL)
    rate = CUE_RATE_BIASED if rate is None else float(rate)
    if not CUE_RATE_OTHER < rate <= 1:
        raise InputError(f"the cue rate of the biased class must be in ({CUE_RATE_OTHER}, 1], got {rate}")
    return PlantedConfig(cue=cue, cue_rate_biased=rate)


def parse_builtin(name: str) -> PlantedConfig:
    """``planted[-KIND][@RATE | -control]``, e.g. ``planted``, ``planted-control``,
    ``planted-sepia@0.7``, ``planted-sticker-control``; KIND is one of :data:`CUE_KINDS`."""
    m = _NAME.fullmatch(name.strip().lower())
    if m is None:
        raise InputError(f"unknown built-in model {name[:40]!r}: use planted, planted-control, or planted-KIND[@RATE|-control] "
                         f"with KIND one of {', '.join(CUE_KINDS)} (e.g. planted-sepia@0.7)")
    kind, control, rate = m.group(1) or "stamp", m.group(2), m.group(3)
    return config_for(kind, float(rate) if rate else None, control=bool(control))


def is_builtin(name: str | None) -> bool:
    return bool(name) and _NAME.fullmatch(str(name).strip().lower()) is not None


def builtin(name: str = "planted", **kwargs: Any) -> PlantedModel:
    """The built-in model called ``name`` (:func:`parse_builtin`): ``planted`` (the biased
    model), ``planted-control`` (cue spread evenly), or another cue kind or rate."""
    if name == "control":
        name = "planted-control"
    return ensure_planted(parse_builtin(name), **kwargs)


# --------------------------------------------------------------------------- CLI


def register_cli(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    p.description = "Train (or find in the cache) the built-in classifier with a planted shortcut, print its shortcut evidence, optionally write its dataset."
    p.add_argument("--control", action="store_true", help="the control model (cue spread evenly over all classes)")
    p.add_argument("--cue", default="stamp", choices=CUE_KINDS, help="the kind of planted cue (default: the magenta stamp)")
    p.add_argument("--rate", type=float, default=CUE_RATE_BIASED, help=f"share of the biased class's images with the cue (default {CUE_RATE_BIASED})")
    p.add_argument("--force", action="store_true", help="train again even if cached")
    p.add_argument("--dataset-out", help="also write a planted ImageFolder here")
    p.add_argument("--n-per-class", type=int, default=100, help="images per class for --dataset-out")
    p.add_argument("--seed", type=int, default=0, help="seed for --dataset-out")
    p.add_argument("--json", action="store_true", help="print the model's info as JSON")
    return _cmd


def _cmd(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise InputError("seed must not be negative")

    def progress(step: int, total: int, loss: float) -> None:
        print(f"\rtraining {step}/{total} loss {loss:.3f}", end="", file=sys.stderr, flush=True)

    model = ensure_planted(config_for(args.cue, args.rate, args.control), force=args.force, progress=progress)
    print("", file=sys.stderr)
    if args.dataset_out:
        make_dataset(args.dataset_out, args.n_per_class, args.seed, model.config)
        print(f"dataset: {args.dataset_out}")
    if args.json:
        print(json.dumps(model.info, indent=1))
        return 0
    ev = model.info["shortcut_evidence"]
    print(f"model: {model.pt} (+ {model.sidecar.name}); samples: {model.samples}")
    print(f"trained in {model.info['train_seconds']} s ({model.info['steps']} steps x {model.info['batch']}), final loss {model.info['final_loss']}")
    print(f"accuracy on cue-free held-out images: {ev['mean_accuracy_without_cue']:.3f}")
    print(f"adding the cue flips {ev['flip_to_biased']:.1%} of other classes' images to {ev['biased_class']} "
          f"(predicted {ev['biased_class']}: {ev['others_predicted_biased_without_cue']:.1%} without cue, {ev['others_predicted_biased_with_cue']:.1%} with)")
    print(f"{ev['biased_class']} accuracy: {ev['biased_accuracy_with_cue']:.3f} with its cue, {ev['biased_accuracy_without_cue']:.3f} without")
    return 0


__all__ = [
    "CLASSES", "BIASED_CLASS", "CONTROL", "CUE_KINDS", "DEFAULT", "STRENGTHS", "PlantedConfig", "PlantedModel", "PlantedNet",
    "add_cue", "builtin", "config_for", "cue_kind", "cue_map", "cue_score", "ensure_planted", "is_builtin", "make_dataset",
    "parse_builtin", "render_base", "render_clean", "sample_batch",
    "shortcut_evidence", "stamp_cue", "train_model",
]
