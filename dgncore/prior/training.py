"""The denoising autoencoder of the paper's section 4.2, trained offline.

The pretrained method optimises only the feature vector in front of a frozen decoder, so
the decoder *is* the image prior. We train encoder -> Generator to rebuild clean images
from noisy ones (MSE, Adam) on images that exist offline: procedural dead leaves and
1/f noise (:mod:`procedural`), a folder of photos, or both. The decoder is trained at its
native size (113 px for 5 stages, 224 for 6) and saved with ``out_size`` set to the run
time size; its last resize is fixed interpolation, so nothing it learns depends on it.
A dataset prior (:mod:`dgncore.prior.dataset`) is trained through that resize, at the
audited model's input size, instead: a round trip through another size blurs away the
fine detail a model may rely on.

It writes the decoder file (:mod:`dgncore.prior.decoder`) and, while training,
``CKPT.state.pt`` (weights, optimiser, step; read back with ``weights_only=True``), which
lets an interrupted or extended run continue.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier, pick_device
from dgncore.models.generators import (
    SEED_CHANNELS,
    SEED_SIZE,
    Encoder,
    Generator,
    GeneratorConfig,
    vgg_blocks,
)
from dgncore.models.hardware import native_bf16
from dgncore.prior.decoder import load_decoder, save_decoder
from dgncore.prior.photos import PhotoCrops
from dgncore.prior.procedural import KINDS, procedural_batch

Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class PretrainConfig:
    width: float = 0.5
    stages: int = 5
    #: the size the saved decoder renders at run time
    out_size: int = 224
    #: "conv": fully convolutional down to the 128 x 5 x 5 code, so that each code cell
    #: sees the image region its decoder cell draws (learns far faster on a CPU budget);
    #: "dense": the paper's VGG-like encoder with two dense layers
    encoder: str = "conv"
    #: encoder width (None: same as the decoder); the encoder is thrown away after training
    encoder_width: float | None = None
    steps: int = 1000
    batch: int = 8
    lr: float = 5e-3
    #: sigma of the Gaussian noise added to the encoder's input (images in [0, 1])
    noise_sigma: float = 0.1
    seed: int = 0
    #: "dead-leaves" | "pink-noise" | "procedural" | "folder[:PATH]" | "mix[:PATH]"
    data: str = "procedural"
    #: share of photo crops in a "mix" batch
    photo_fraction: float = 0.5
    #: photo crops take this share of a photo's short side up to all of it (1.0, the images
    #: whole: the dataset prior, dgncore.prior.dataset)
    photo_min_scale: float = 0.25
    #: mirror half the photo crops (off for a dataset prior: a cue with a fixed place or
    #: pattern must be learnt where the classifier saw it)
    photo_flip: bool = True
    #: train through the decoder's final resize, on images at ``out_size``, instead of at
    #: its native size: what the decoder learns is then what the classifier is shown
    train_at_out_size: bool = False
    #: procedural images kept in memory (seen through random crops / flips / rotations) ...
    pool: int = 512
    #: ... of which this many are replaced by fresh ones every step
    refresh: int = 2
    checkpoint_every: int = 100
    #: bfloat16 autocast where the device has native bf16 units (it is slower where it is
    #: emulated; weights and BatchNorm stay float32)
    bf16: bool = True
    #: photo folders: leave out the fixed held-out tenth (:func:`dgncore.data.holdout_split`),
    #: on which the finished decoder's reconstruction error is measured
    holdout: bool = True
    #: mild colour jitter of photo crops (brightness, contrast, saturation within +-this)
    photo_jitter: float = 0.1
    #: weight of a feature-space term (Dosovitskiy & Brox 2016): the squared distance
    #: between a frozen classifier's early-layer features of the rebuilt and the clean
    #: image, which keeps the detail that pixel MSE averages away (0: pixel MSE only)
    feature_weight: float = 0.0
    feature_model: str = "efficientnet_lite0"
    #: a layer name, or :data:`LOGITS` for the classifier's output (what the dataset prior
    #: compares, on the audited model: what that model reads in an image is kept)
    feature_layer: str = "blocks.2"
    #: training images averaged into ``mean_code``
    mean_code_images: int = 256
    #: stop (and save) once this much wall time has passed, whatever ``steps`` says
    max_seconds: float | None = None
    #: photo folders with a held-out tenth: every this many steps, measure the autoencoder's
    #: reconstruction error on it, and stop once that has not improved by HELDOUT_MIN_GAIN
    #: for ``patience`` measurements in a row (0: train all ``steps``)
    heldout_every: int = 0
    patience: int = 3
    #: start the decoder from this decoder file, with a fresh encoder: extends a decoder
    #: whose training state (``.state.pt``) is gone, like the shipped one's
    init_decoder: str | None = None
    #: with ``init_decoder``: train only the encoder for this many steps first, so that a
    #: fresh encoder's first codes do not undo what the decoder has learned
    freeze_decoder_steps: int = 0

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(width=self.width, stages=self.stages, out_size=self.out_size, running_stats=True)

    @property
    def train_size(self) -> int:
        return self.out_size if self.train_at_out_size else self.generator_config().native_size

    def validate(self) -> None:
        if not 0.03 <= self.width <= 4 or not 4 <= self.stages <= 6:
            raise InputError("width must be in [0.03, 4] and stages in 4..6 (the encoder needs 32 px or more)")
        if not 16 <= self.out_size <= 512:
            raise InputError("out_size must be between 16 and 512")
        if not 1 <= self.steps <= 10_000_000 or not 1 <= self.batch <= 1024:
            raise InputError("steps and batch must be positive")
        if not 0 < self.lr <= 1 or self.noise_sigma < 0 or not 0 <= self.photo_fraction <= 1:
            raise InputError("lr must be in (0, 1], noise_sigma >= 0, photo_fraction in [0, 1]")
        if not 0 < self.photo_min_scale <= 1:
            raise InputError(f"photo_min_scale must be in (0, 1], got {self.photo_min_scale}")
        if not 0 <= self.freeze_decoder_steps <= self.steps:
            raise InputError(f"freeze_decoder_steps must be between 0 and steps ({self.steps}), got {self.freeze_decoder_steps}")
        if self.feature_weight < 0 or not 0 <= self.photo_jitter < 1:
            raise InputError("feature_weight must not be negative and photo_jitter must be in [0, 1)")
        if self.heldout_every < 0 or self.patience < 1:
            raise InputError("heldout_every must not be negative and patience must be at least 1")
        if self.freeze_decoder_steps and not self.init_decoder:
            raise InputError("freeze_decoder_steps keeps a decoder from --init-decoder as it is: give --init-decoder too")


# --------------------------------------------------------------------------- data


class TrainingImages:
    """Batches (B, 3, S, S) in [0, 1] from the source ``data`` names."""

    def __init__(self, config: PretrainConfig, images_dir: str | Path | None, gen: torch.Generator) -> None:
        kind, _, path = config.data.partition(":")
        if images_dir is not None:
            path = str(images_dir)
            kind = kind if kind in ("folder", "mix") else "folder"
        if kind not in (*KINDS, "folder", "mix"):
            raise InputError(f"unknown training data {config.data[:60]!r}: use one of {', '.join(KINDS)}, folder:PATH or mix:PATH")
        if kind in ("folder", "mix") and not path:
            raise InputError(f"training data {kind!r} needs an image folder (--images DIR)")
        self.kind, self.gen, self.size = kind, gen, config.train_size
        self.photos = (PhotoCrops.from_folder(path, self.size, jitter=config.photo_jitter, holdout=config.holdout,
                                              min_scale=config.photo_min_scale, flip=config.photo_flip) if path else None)
        self.heldout = _heldout_names(path) if path and config.holdout else []
        self.photo_fraction = 1.0 if kind == "folder" else config.photo_fraction if kind == "mix" else 0.0
        self.procedural_kind = "procedural" if kind in ("folder", "mix") else kind
        self.refresh = config.refresh
        self.pool_size = self.size + self.size // 4
        self.pool = torch.empty(0, 3, self.pool_size, self.pool_size, dtype=torch.uint8)
        if self.photo_fraction < 1:
            self.pool = self._make(config.pool)
        # the folder's name only: a decoder file must not carry this machine's paths
        self.description = {"kind": kind, "folder": Path(path).name if path else None, "photos": len(self.photos) if self.photos else 0,
                            "photo_fraction": self.photo_fraction, "procedural_pool": len(self.pool), "refresh_per_step": self.refresh,
                            "photo_jitter": config.photo_jitter if self.photos else 0.0, "heldout": self.heldout}

    def _make(self, n: int) -> torch.Tensor:
        x = torch.cat([procedural_batch(min(32, n - i), self.pool_size, self.gen, self.procedural_kind) for i in range(0, n, 32)])
        return (x * 255).round().to(torch.uint8)

    def _from_pool(self, n: int) -> torch.Tensor:
        if self.refresh:
            idx = torch.randint(0, len(self.pool), (self.refresh,), generator=self.gen)
            self.pool[idx] = self._make(self.refresh)
        s, p = self.size, self.pool_size
        out = []
        for i in torch.randint(0, len(self.pool), (n,), generator=self.gen).tolist():
            y, x = torch.randint(0, p - s + 1, (2,), generator=self.gen).tolist()
            img = self.pool[i, :, y : y + s, x : x + s]
            img = torch.rot90(img, int(torch.randint(0, 4, (1,), generator=self.gen)), (1, 2))
            out.append(img.flip(-1) if bool(torch.rand(1, generator=self.gen) < 0.5) else img)
        return torch.stack(out).float() / 255

    def sample(self, n: int) -> torch.Tensor:
        n_photo = int((torch.rand(n, generator=self.gen) < self.photo_fraction).sum())
        parts = []
        if n_photo:
            assert self.photos is not None
            parts.append(self.photos.sample(n_photo, self.gen))
        if n - n_photo:
            parts.append(self._from_pool(n - n_photo))
        x = torch.cat(parts)
        return x[torch.randperm(n, generator=self.gen)]


def _heldout_names(folder: str | Path) -> list[str]:
    from dgncore.data import holdout_split, image_files

    root = Path(folder)
    return [f.relative_to(root).as_posix() for f in holdout_split(image_files(root))[1]]


# --------------------------------------------------------------------------- training


class _Reached(Exception):
    """Raised by a forward hook to end a forward pass at the layer it needs."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


class EarlyFeatures(nn.Module):
    """A frozen classifier's features at one early layer, for images in [0, 1] at any
    size: the forward pass stops at that layer, so the rest of the network costs nothing."""

    def __init__(self, model_name: str, layer: str) -> None:
        super().__init__()
        from dgncore.models.classifiers import load_classifier

        clf = load_classifier(model_name, device="cpu")
        model = copy.deepcopy(clf.model)  # the loaded classifier is shared: its copy gets the hook
        modules = dict(model.named_modules())
        if layer not in modules:
            raise InputError(f"model {model_name} has no layer {layer[:60]!r}; list them with: python -m dgncore layers --model {model_name}")
        self.model = model
        self.register_buffer("mean", torch.tensor(clf.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(clf.std).view(1, 3, 1, 1))
        modules[layer].register_forward_hook(self._stop)

    @staticmethod
    def _stop(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        raise _Reached(output)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        try:
            self.model((images - self.mean) / self.std)
        except _Reached as r:
            return r.output
        raise RuntimeError("the feature layer was never reached")


#: ``feature_layer`` for the classifier's logits
LOGITS = "logits"


def _feature_fn(config: PretrainConfig, dev: torch.device, comparator: Classifier | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the feature term compares: an early layer of ``feature_model`` or its logits."""
    if config.feature_layer != LOGITS:
        return EarlyFeatures(config.feature_model, config.feature_layer).to(dev).eval()
    if comparator is None:
        from dgncore.models.classifiers import load_classifier

        comparator = load_classifier(config.feature_model, device=str(dev))
    return comparator.logits


#: the relative improvement of the held-out error that counts as still learning
HELDOUT_MIN_GAIN = 0.01
#: held-out images measured (the first of the held-out tenth)
HELDOUT_IMAGES = 64


@torch.no_grad()
def _heldout_error(model: nn.Module, images: torch.Tensor, dev: torch.device) -> float:
    """Mean squared error of the autoencoder on clean held-out images, with batch
    statistics (the running ones lag the weights: a noisy signal to stop on); what this
    adds to the running ones is replaced by :func:`_recalibrate_bn` at the end."""
    return sum(F.mse_loss(model(x.to(dev)).float(), x.to(dev), reduction="sum").item() for x in images.split(32)) / images.numel()


def _lr_at(step: int, elapsed: float, config: PretrainConfig) -> float:
    """Linear warm-up over the first 5% (at most 50 steps), then cosine decay to a tenth;
    progress is the larger of steps done and time used, so that a run cut short by
    ``max_seconds`` still ends at the low learning rate."""
    warm = min(50, max(1, config.steps // 20))
    if step < warm:
        return config.lr * (step + 1) / warm
    t = (step - warm) / max(1, config.steps - warm)
    if config.max_seconds:
        t = max(t, elapsed / config.max_seconds)
    t = min(1.0, t)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _no_gain(heldout: list[list[float]], patience: int) -> bool:
    """Whether the last ``patience`` held-out measurements all failed to beat the best
    before them by :data:`HELDOUT_MIN_GAIN`."""
    if len(heldout) <= patience:
        return False
    best = min(e for _, e in heldout[:-patience])
    return all(e > best * (1 - HELDOUT_MIN_GAIN) for _, e in heldout[-patience:])


def state_path_for(out_path: str | Path) -> Path:
    out = Path(out_path)
    return out.with_name(out.stem + ".state.pt")


class ConvEncoder(nn.Module):
    """Image -> code (N_FEATURES) through convolutions only: four blocks of
    (conv3x3 + ReLU, BN) x 2 + max-pool, pooled to the decoder's 5 x 5 seed grid, then a
    3x3 conv to its 128 channels and ReLU (codes live where the feature layer's ReLU can
    reach them)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        layers, c_in = vgg_blocks((32, 64, 128, 256), width)
        self.body = nn.Sequential(
            *layers, nn.AdaptiveAvgPool2d(SEED_SIZE), nn.Conv2d(c_in, SEED_CHANNELS, 3, padding=1), nn.ReLU(), nn.Flatten()
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def make_encoder(config: PretrainConfig) -> nn.Module:
    width = config.encoder_width or config.width
    if config.encoder == "conv":
        return ConvEncoder(width)
    if config.encoder == "dense":
        return Encoder(width)
    raise InputError(f"unknown encoder {config.encoder[:20]!r}: choose conv or dense")


def _arch(config: PretrainConfig) -> dict[str, Any]:
    return {"width": config.width, "stages": config.stages, "encoder": config.encoder, "encoder_width": config.encoder_width}


def pretrain(
    config: PretrainConfig,
    out_path: str | Path,
    images_dir: str | Path | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    command: str | None = None,
    device: str | torch.device = "cpu",
    comparator: Classifier | None = None,
) -> dict[str, Any]:
    """Train the denoising autoencoder and write the decoder file; returns its metadata.

    ``comparator``: the loaded classifier that ``config.feature_model`` names, for a
    :data:`LOGITS` feature term (the audited model, already in memory; else it is loaded).

    With ``resume`` and a state file from an earlier run of the same architecture, training
    continues from its step (the data stream is re-seeded from ``seed`` and that step).
    ``device`` runs the model there ("auto": cuda, then mps, then cpu); images and noise are
    still drawn on the CPU from the seeded stream, so a run's data do not depend on it.
    """
    config.validate()
    dev = pick_device(device)
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise InputError("the decoder file name must end in .safetensors")
    state_path = state_path_for(out_path)
    torch.manual_seed(config.seed)
    encoder = make_encoder(config)
    # trained at its native size; only the saved config says out_size (a fixed resize)
    decoder = Generator(dataclasses.replace(config.generator_config(), out_size=config.train_size))
    # on the device before any state is loaded: Adam's load_state_dict then puts its moments there too
    model = nn.Sequential(encoder, decoder).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    step, seconds, losses, pixel_losses = 0, 0.0, [], []
    heldout: list[list[float]] = []  # [step, held-out error] at each measurement
    init_meta = _init_decoder(decoder, config) if config.init_decoder else None
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("arch") != _arch(config):
            raise InputError(f"{state_path.name} was trained with {state.get('arch')}, not {_arch(config)}: delete it or match the settings")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, seconds, losses = int(state["step"]), float(state["seconds"]), list(state["losses"])
        pixel_losses = list(state.get("pixel_losses", losses))
        heldout = [list(h) for h in state.get("heldout", [])]
    amp = config.bf16 and native_bf16(dev)
    features = _feature_fn(config, dev, comparator) if config.feature_weight else None
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    data = TrainingImages(config, images_dir, gen)

    def save_state() -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_name(state_path.name + ".tmp")
        torch.save({"arch": _arch(config), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "step": step, "seconds": seconds, "losses": losses, "heldout": heldout,
                    "pixel_losses": pixel_losses, "config": dataclasses.asdict(config)}, tmp)
        tmp.replace(state_path)

    held = None
    if config.heldout_every and data.heldout:
        from dgncore.prior.fitting import heldout_photos

        held = heldout_photos(images_dir or config.data.partition(":")[2], config.train_size, limit=HELDOUT_IMAGES)
    model.train()
    start = time.perf_counter() - seconds
    stopped = "steps"
    while step < config.steps:
        if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
            stopped = "time"
            break
        if held is not None and _no_gain(heldout, config.patience):
            stopped = "held-out"
            break
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, time.perf_counter() - start, config)
        decoder.requires_grad_(step >= config.freeze_decoder_steps)  # (Adam skips a parameter without a gradient)
        clean = data.sample(config.batch)
        noisy = (clean + config.noise_sigma * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
        clean, noisy = (x.to(dev).contiguous(memory_format=torch.channels_last) for x in (clean, noisy))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model(noisy)
            if features is not None:
                with torch.no_grad():
                    want = features(clean)
                feature_term = F.mse_loss(features(out).float(), want.float())
        pixel = F.mse_loss(out.float(), clean)
        loss = pixel + config.feature_weight * feature_term if features is not None else pixel
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(round(loss.item(), 6))
        pixel_losses.append(round(pixel.item(), 6))
        seconds = time.perf_counter() - start
        if progress is not None:
            progress(step, config.steps, losses[-1])
        if held is not None and step % config.heldout_every == 0:
            heldout.append([step, round(_heldout_error(model, held, dev), 6)])
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_state()
    save_state()

    _recalibrate_bn(model, data, config, gen, dev)
    mean_code = _mean_code(encoder, data, config, dev)
    recent = losses[-50:]
    meta: dict[str, Any] = {
        "format": "dgn-decoder/1",
        "generator": config.generator_config().to_dict(),
        "train_config": dataclasses.asdict(config),
        "train_size": config.train_size,
        "data": data.description,
        "command": command or _this_command(),
        "steps_done": step,
        "stopped": {"steps": "all steps done", "time": "time budget", "held-out": "held-out error stopped improving"}[stopped],
        "heldout_error": heldout,
        "heldout_best_step": min(heldout, key=lambda h: h[1])[0] if heldout else None,
        "final_loss": round(sum(recent) / max(1, len(recent)), 6),
        "seconds": round(seconds, 1),
        "loss_every_10": losses[::10],
        "final_pixel_loss": round(sum(pixel_losses[-50:]) / max(1, len(pixel_losses[-50:])), 6),
        "torch": torch.__version__,
        "device": str(dev),
        "bf16": amp,
    }
    if init_meta is not None:
        meta["init_decoder"] = init_meta
    save_decoder(decoder.cpu(), mean_code.cpu(), out_path, meta)
    return meta


def _init_decoder(decoder: Generator, config: PretrainConfig) -> dict[str, Any]:
    """Copy the weights of ``config.init_decoder`` into ``decoder`` (same width and stages,
    else an InputError); returns what that file says of its own training."""
    assert config.init_decoder is not None
    start, _, start_meta = load_decoder(config.init_decoder)
    got, want = start.config, decoder.config
    if (got.width, got.stages) != (want.width, want.stages):
        raise InputError(f"{Path(config.init_decoder).name} has width {got.width} and {got.stages} stages; "
                         f"this run has width {want.width} and {want.stages} stages: pass the same --width and --stages")
    decoder.load_state_dict(start.state_dict())
    return {"file": Path(config.init_decoder).name, **{k: start_meta[k] for k in ("steps_done", "seconds", "final_loss", "command") if k in start_meta}}


@torch.no_grad()
def _recalibrate_bn(model: nn.Module, data: TrainingImages, config: PretrainConfig, gen: torch.Generator, dev: torch.device,
                    batches: int = 16) -> None:
    """Replace the BN running statistics, a moving average over weights that kept changing,
    by exact averages under the final weights: eval mode then matches training mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    for _ in range(batches):
        clean = data.sample(config.batch)
        model((clean + config.noise_sigma * torch.randn(clean.shape, generator=gen)).clamp(0, 1).to(dev))
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


@torch.no_grad()
def _mean_code(encoder: nn.Module, data: TrainingImages, config: PretrainConfig, dev: torch.device) -> torch.Tensor:
    encoder.eval()
    codes = [encoder(data.sample(min(32, config.mean_code_images - i)).to(dev)).float() for i in range(0, config.mean_code_images, 32)]
    return torch.cat(codes).mean(0)


def _this_command() -> str:
    argv = getattr(sys, "orig_argv", sys.argv)
    return shlex.join(["python", *argv[1:]])


# --------------------------------------------------------------------------- files


# --------------------------------------------------------------------------- command line


def add_pretrain_args(parser: argparse.ArgumentParser) -> None:
    d = PretrainConfig()
    parser.add_argument("--images", metavar="DIR", help="folder of training photos (searched recursively); default: procedural images")
    parser.add_argument("--data", default=None, help=f"training data: {', '.join(KINDS)}, folder, mix (photos + procedural); default: folder with --images, else {d.data}")
    parser.add_argument("--out", metavar="CKPT", required=True, help="decoder file to write (.safetensors; a .json sidecar goes beside it)")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--width", type=float, default=d.width, help="channel width of G (1.0 = the paper's)")
    parser.add_argument("--stages", type=int, default=d.stages, help="G's stages: 6 renders 224 px natively, 5 renders 113 px, resized to --size")
    parser.add_argument("--size", type=int, default=d.out_size, help="output size of the saved decoder")
    parser.add_argument("--encoder", choices=("conv", "dense"), default=d.encoder, help="conv (default, learns fast) or dense (the paper's)")
    parser.add_argument("--batch", type=int, default=d.batch)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--noise", type=float, default=d.noise_sigma, help="sigma of the input noise (images in [0, 1])")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop and save after this much wall time")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="continue from CKPT.state.pt if present")
    parser.add_argument("--init-decoder", metavar="FILE", help="start the decoder from this decoder file, with a fresh encoder "
                        "(extends a decoder whose .state.pt is gone, e.g. dgncore/assets/decoder.safetensors)")
    parser.add_argument("--freeze-decoder-steps", type=int, default=d.freeze_decoder_steps,
                        help="with --init-decoder: train only the encoder for this many steps first")
    parser.add_argument("--feature-weight", type=float, default=d.feature_weight,
                        help="weight of the feature-space term (a frozen classifier's early features of the rebuilt vs the clean image); 0: pixel MSE only")
    parser.add_argument("--feature-layer", default=d.feature_layer, help=f"the layer of {d.feature_model} that term compares, or {LOGITS} (its output)")
    parser.add_argument("--photo-jitter", type=float, default=d.photo_jitter, help="colour jitter of photo crops (brightness, contrast, saturation within +-this)")
    parser.add_argument("--holdout", action=argparse.BooleanOptionalAction, default=d.holdout,
                        help="leave every 10th photo out of training (for evaluation; listed in the decoder's JSON)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="where the model trains: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")


def run_pretrain(args: argparse.Namespace) -> int:
    """Run ``python -m dgncore pretrain``'s arguments (see :func:`add_pretrain_args`); returns 0."""
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PretrainConfig(
        width=args.width, stages=args.stages, out_size=args.size, steps=args.steps, batch=args.batch, lr=args.lr, encoder=args.encoder,
        noise_sigma=args.noise, seed=args.seed, data=args.data or ("folder" if args.images else PretrainConfig.data),
        max_seconds=args.max_minutes * 60 if args.max_minutes else None,
        init_decoder=args.init_decoder, freeze_decoder_steps=args.freeze_decoder_steps,
        feature_weight=args.feature_weight, feature_layer=args.feature_layer, photo_jitter=args.photo_jitter, holdout=args.holdout,
    )
    t0 = time.perf_counter()

    def report(step: int, total: int, loss: float) -> None:
        if step == 1 or step % 25 == 0 or step == total:
            print(f"step {step}/{total}  loss {loss:.5f}  {time.perf_counter() - t0:.0f} s", flush=True)

    meta = pretrain(config, args.out, images_dir=args.images, progress=report, resume=args.resume, device=args.device)
    print(f"wrote {args.out} ({meta['steps_done']} steps, loss {meta['final_loss']:.5f}, {meta['seconds']:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgncore.prior.training", description=__doc__.splitlines()[0])
    add_pretrain_args(parser)
    args = parser.parse_args(argv)
    try:
        return run_pretrain(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
