"""The optimisation loop: many independent targets in one batch.

Row k of the batch is its own problem (its own alpha, and for ``untrained`` its own G
through grouped convolutions), so one forward/backward serves them all. The classifier
stays frozen and in eval mode; only the image source trains.

The image a row returns is the image a user gets: every ``check_every`` steps the loop
makes each row's candidate (the noise-free image, or the median of recent ones),
rounds it to 8 bits as the PNG will be, and scores it in inference mode; early stopping
uses that score, never the noisy training pass.
"""

from __future__ import annotations

import functools
import numbers
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .classifiers import Classifier
from .errors import InputError
from .objectives import Objective, Target
from .presets import Preset
from .sources import FourierSource, ImageSource, PixelSource, PretrainedSource, UntrainedSource

MAX_BATCH = 64
MAX_SEED = 2**63 - 1


@dataclass
class Progress:
    """What a progress callback sees (every ``check_every`` steps and at the end)."""

    step: int
    total: int
    #: per step, per row: a(target) in the training pass
    activation: list[list[float]]
    #: per check: the step, and per row the target probability of the 8-bit candidate
    checks: list[tuple[int, list[float]]]
    #: (B, 3, S, S) candidates in [0, 1] on the CPU
    images: torch.Tensor
    done: list[bool]


@dataclass
class RunResult:
    targets: list[Target]
    preset: Preset
    seed: int
    device: str
    #: (B, 3, S, S) final images in [0, 1], already rounded to 8 bits
    images: torch.Tensor
    activation: list[list[float]]
    checks: list[tuple[int, list[float]]]
    #: per row: a(target) and ReLU(a) of the starting image (the ReLU trap shows as 0)
    start_activation: list[float]
    #: per row: the step at which the row's image was fixed (early stop) or the last step
    steps: list[int]
    seconds: float
    cancelled: bool = False
    frames: list[torch.Tensor] = field(default_factory=list)
    #: per row: which of the ``preset.restarts`` starts gave the image (0 with one start)
    restart: list[int] = field(default_factory=list)


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to what an 8-bit PNG stores, so scores here equal scores of the saved file."""
    return (images.clamp(0, 1) * 255).round() / 255


@functools.lru_cache(maxsize=2)
def _decoder(path: str, device: str):
    from .pretrain import load_decoder

    return load_decoder(Path(path), torch.device(device))


def build_source(preset: Preset, n: int, device: torch.device) -> ImageSource:
    """The trainable image source for ``preset.method`` with ``n`` independent rows."""
    if preset.method == "untrained":
        return UntrainedSource(preset, n).to(device)
    if preset.method == "pretrained":
        if not preset.checkpoint:
            raise InputError("the pretrained method needs a decoder checkpoint")
        decoder, mean_code, _meta = _decoder(str(preset.checkpoint), str(device))
        return PretrainedSource(preset, n, decoder, mean_code.to(device)).to(device)
    if preset.method == "pixel":
        return PixelSource(preset, n).to(device)
    if preset.method == "fourier":
        return FourierSource(preset, n).to(device)
    raise InputError(f"unknown method {preset.method!r}")


def _optimizer(preset: Preset, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if preset.optimizer == "adamax":
        return torch.optim.Adamax(params, lr=preset.lr, betas=preset.betas, eps=preset.eps)
    if preset.optimizer == "adam":
        return torch.optim.Adam(params, lr=preset.lr, betas=preset.betas, eps=preset.eps)
    return torch.optim.SGD(params, lr=preset.lr, momentum=preset.momentum, nesterov=preset.nesterov)


class _Candidates:
    """Keeps what each row's final image is made from: the latest noise-free image, or a
    ring of recent training images for the per-pixel median."""

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.ring: list[torch.Tensor] = []

    def record(self, step: int, images: torch.Tensor) -> None:
        p = self.preset
        if p.final == "median" and (step + 1) % max(1, p.median_every) == 0:
            self.ring.append(images.detach())
            if len(self.ring) > p.median_of:
                self.ring.pop(0)

    def current(self, source: ImageSource) -> torch.Tensor:
        if self.preset.final == "median" and self.ring:
            return torch.stack(self.ring).median(0).values
        was_training = source.training
        source.eval()
        with torch.no_grad():
            out = source()
        source.train(was_training)
        return out


def optimize(
    classifier: Classifier,
    targets: Sequence[Target],
    preset: Preset,
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelFn | threading.Event | None = None,
    check_every: int = 10,
    keep_frames: bool = False,
    bf16: bool | None = None,
) -> RunResult:
    """Maximise each target in its own row; see the module docstring.

    With ``preset.restarts`` = R > 1 each target gets R rows from different starts; every
    check keeps, per target, the start whose 8-bit candidate scores highest, and what the
    caller sees (progress, checks, images, activation) is per target, as with R = 1.

    ``bf16``: run the training pass (source, classifier, loss inputs) under bf16 autocast,
    meant for GPUs with bf16 units; None reads ``DGN_BF16=1`` from the environment. The
    candidate images and every score stay fp32."""
    if not targets:
        raise InputError("nothing to optimise: give at least one target")
    if len(targets) > MAX_BATCH:
        raise InputError(f"at most {MAX_BATCH} targets in one batch, got {len(targets)}")
    preset.validate()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be a whole number between 0 and {MAX_SEED}, got {str(seed)[:30]!r}")
    device = classifier.device
    is_cancelled: CancelFn = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
    n = len(targets)
    n_starts = preset.restarts
    #: bf16 autocast of the training forward (off by default; DGN_BF16=1 turns it on)
    amp = (os.environ.get("DGN_BF16", "0") == "1") if bf16 is None else bool(bf16)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    source = build_source(preset, n * n_starts, device)
    source.train()
    objective = Objective([t for t in targets for _ in range(n_starts)], classifier.n_classes, preset.penalty, device)
    params = [p for p in source.parameters() if p.requires_grad]
    opt = _optimizer(preset, params)
    candidates = _Candidates(preset)

    final: torch.Tensor | None = None
    chosen = [0] * n
    done = torch.zeros(n, dtype=torch.bool)
    stopped_at = [preset.steps] * n
    acts: list[torch.Tensor] = []
    checks: list[tuple[int, list[float]]] = []
    frames: list[torch.Tensor] = []
    start = torch.zeros(n)
    cancelled = False
    step = 0
    row_act = torch.zeros(n * n_starts)  # the latest training a(target) of every row

    def per_target(values: torch.Tensor) -> torch.Tensor:
        """(n * R,) per row -> (n,) the best start of each target."""
        return values.view(n, n_starts).max(1).values

    def check(step_done: int) -> tuple[torch.Tensor, list[int]]:
        imgs = quantize(candidates.current(source))
        with torch.inference_mode():
            logits = classifier.logits(imgs)
        prob = objective.probability(logits).float().cpu().view(n, n_starts)
        # filter/neuron targets have no probability (NaN): their starts compete on a(target)
        score = torch.where(torch.isnan(prob), row_act.float().cpu().view(n, n_starts), prob)
        best = torch.nan_to_num(score, nan=-float("inf")).argmax(1)
        rows = torch.arange(n) * n_starts + best
        checks.append((step_done, prob.gather(1, best[:, None]).squeeze(1).tolist()))
        return imgs[rows.to(imgs.device)].cpu(), best.tolist()

    def keep(rows: list[int], imgs: torch.Tensor, best: list[int], at: int) -> None:
        """Fix these targets' images (the buffer is sized from the first candidate: a
        decoder sets its own image size)."""
        nonlocal final
        if final is None:
            final = torch.zeros_like(imgs)
        for i in rows:
            final[i], chosen[i], stopped_at[i] = imgs[i], best[i], at

    for step in range(preset.steps):
        if is_cancelled():
            cancelled = True
            break
        if amp:  # bf16 autocast for the training pass only; candidates and scores stay fp32
            with torch.autocast(device.type, dtype=torch.bfloat16):
                images = source()
                logits, layer_acts = classifier.logits_and_activations(source.classifier_view(images.float()), objective.layers)
            images, logits, layer_acts = images.float(), logits.float(), {k: v.float() for k, v in layer_acts.items()}
        else:
            images = source()
            logits, layer_acts = classifier.logits_and_activations(source.classifier_view(images), objective.layers)
        loss, act = objective.loss(logits, layer_acts, source.regularizer())
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        row_act = act  # (detached) stays on the device: read only at checks
        act = per_target(act)
        acts.append(act)
        if step == 0:
            start = act.float().cpu()
        candidates.record(step, images)
        last = step == preset.steps - 1
        if (step + 1) % check_every == 0 or last:
            imgs, best = check(step + 1)
            if keep_frames:
                frames.append(imgs)
            prob = torch.tensor(checks[-1][1])
            newly = ~done & (torch.nan_to_num(prob, nan=-1.0) >= (preset.early_stop if preset.early_stop else 2.0))
            if last:
                newly = ~done
            keep(torch.nonzero(newly).flatten().tolist(), imgs, best, step + 1)
            done |= newly
            if progress is not None:
                history = torch.stack(acts).float().cpu().tolist()
                progress(Progress(step + 1, preset.steps, history, list(checks), torch.where(done[:, None, None, None], final, imgs), done.tolist()))
            if bool(done.all()):
                break
    if not bool(done.all()):  # cancelled: keep what each row has now
        imgs, best = check(step)
        keep(torch.nonzero(~done).flatten().tolist(), imgs, best, step)
    history = torch.stack(acts).float().cpu().tolist() if acts else []
    return RunResult(
        targets=list(targets), preset=preset, seed=seed, device=str(device), images=final,
        activation=history, checks=checks, start_activation=start.tolist(), steps=stopped_at,
        seconds=time.perf_counter() - t0, cancelled=cancelled, frames=frames, restart=chosen,
    )
