"""The optimisation loop: many independent targets in one batch.

Row k of the batch is its own problem (its own alpha, and for ``untrained`` its own G
through grouped convolutions), so one forward/backward serves them all. The classifier
stays frozen and in eval mode; only the image source trains. A target whose image is
fixed (early stop) leaves the batch, so the rest run on at the cost of what is left.

The image a row returns is the image a user gets: every ``check_every`` steps the loop
makes each row's candidate (the noise-free image, or the median of recent ones),
rounds it to 8 bits as the PNG will be, and scores it in inference mode; early stopping
uses that score, never the noisy training pass.
"""

from __future__ import annotations

import numbers
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from dgncore.cancel import Cancel, CancelFn, cancel_fn
from dgncore.drawing.objectives import Objective, Target
from dgncore.drawing.presets import MAX_BATCH, MAX_RESTARTS, MAX_SEED, Preset
from dgncore.drawing.registry import get_method
from dgncore.drawing.sources import ImageSource
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier
from dgncore.models.hardware import native_bf16

#: Take a target's rows out of the batch once its image is fixed (read at each check;
#: bench/speed.py's ``batch`` section turns it off to measure it).
DROP_FINISHED = True


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
    #: whether the training pass ran under bf16 autocast
    bf16: bool = False


ProgressFn = Callable[[Progress], None]


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to what an 8-bit PNG stores, so scores here equal scores of the saved file."""
    return (images.clamp(0, 1) * 255).round() / 255


def use_bf16(preset: Preset, device: torch.device) -> bool:
    """bf16 autocast for this run: ``DGN_BF16=1`` / ``0`` forces it, else the preset's
    ``bf16`` on a device with native bf16 units."""
    forced = os.environ.get("DGN_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return preset.bf16 and native_bf16(device)


def build_source(preset: Preset, n: int, device: torch.device) -> ImageSource:
    """The trainable image source for ``preset.method`` with ``n`` independent rows."""
    source = get_method(preset.method).source(preset, n, device)
    source.transforms, source.transform_set = preset.transforms, preset.transform_set
    return source.to(device)


def view_batch(images: torch.Tensor, views: int) -> torch.Tensor:
    """The batch the classifier's training pass sees: ``views`` copies of every row, view
    after view, each transformed on its own by the source."""
    return images if views == 1 else images.repeat(views, 1, 1, 1)


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

    def keep_rows(self, keep: torch.Tensor) -> None:
        self.ring = [r[keep] for r in self.ring]

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
    cancel: Cancel = None,
    check_every: int = 10,
    keep_frames: bool = False,
    bf16: bool | None = None,
) -> RunResult:
    """Maximise each target in its own row; see the module docstring.

    With ``preset.restarts`` = R > 1 each target gets R rows from different starts; every
    check keeps, per target, the start whose 8-bit candidate scores highest, and what the
    caller sees (progress, checks, images, activation) is per target, as with R = 1.

    ``bf16``: run the training pass (source, classifier, loss inputs) under bf16 autocast;
    None: ``DGN_BF16=1`` / ``0`` from the environment forces it on / off, else the
    preset's ``bf16`` where the device has native bf16 units (:func:`native_bf16`). The
    candidate images and every score stay fp32."""
    if not targets:
        raise InputError("nothing to optimise: give at least one target")
    if len(targets) > MAX_BATCH:
        raise InputError(f"at most {MAX_BATCH} targets in one batch, got {len(targets)}")
    preset.validate()
    if len(targets) * preset.restarts * preset.views > MAX_BATCH * MAX_RESTARTS:
        raise InputError(f"at most {MAX_BATCH * MAX_RESTARTS} images a step (targets x restarts x views), got "
                         f"{len(targets)} x {preset.restarts} x {preset.views}: draw fewer targets at once")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be a whole number between 0 and {MAX_SEED}, got {str(seed)[:30]!r}")
    device = classifier.device
    is_cancelled: CancelFn = cancel_fn(cancel)
    n = len(targets)
    n_starts = preset.restarts
    amp = use_bf16(preset, device) if bf16 is None else bool(bf16)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    n_rows = n * n_starts
    row_targets = [t for t in targets for _ in range(n_starts)]
    source = build_source(preset, n_rows, device)
    source.train()
    objective = Objective(row_targets, classifier.n_classes, preset.penalty, device)
    params = [p for p in source.parameters() if p.requires_grad]
    opt = _optimizer(preset, params)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, preset.steps) if preset.lr_schedule == "cosine" else None
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
    #: the rows still optimised, in order; a finished target's rows leave the batch
    alive = torch.arange(n_rows)
    alive_dev = alive.to(device)
    #: the latest training a(target) of every row (a finished row keeps its last value);
    #: stays on the device, read only at checks
    row_act = torch.zeros(n_rows, device=device)
    target_prob = torch.full((n,), float("nan"))
    #: starts that lost the race at ``preset.prune_after`` steps
    retired = torch.zeros(n_rows, dtype=torch.bool)

    def check(step_done: int) -> torch.Tensor:
        """Score the alive rows' 8-bit candidates; per unfinished target, pick its best
        start. Returns every target's current image (finished ones: their final)."""
        imgs = quantize(candidates.current(source))
        with torch.inference_mode():
            logits = classifier.logits(imgs)
        prob = torch.full((n_rows,), float("nan"))
        prob[alive] = objective.probability(logits).float().cpu()
        score = torch.full((n_rows,), -float("inf"))
        # filter/neuron targets have no probability (NaN): their starts compete on a(target)
        score[alive] = torch.nan_to_num(torch.where(torch.isnan(prob[alive]), row_act[alive_dev].float().cpu(), prob[alive]), nan=-float("inf"))
        best = score.view(n, n_starts).argmax(1)
        open_ = torch.nonzero(~done).flatten()
        target_prob[open_] = prob.view(n, n_starts)[open_, best[open_]]
        checks.append((step_done, target_prob.tolist()))
        position = torch.full((n_rows,), -1, dtype=torch.long)
        position[alive] = torch.arange(len(alive))
        current = final.clone() if final is not None else imgs.new_zeros((n, *imgs.shape[1:]))
        current[open_] = imgs[position[open_ * n_starts + best[open_]].to(imgs.device)].to(current.device)
        for i in open_.tolist():
            chosen[i] = int(best[i])
        return current.cpu()

    def keep(rows: list[int], imgs: torch.Tensor, at: int) -> None:
        """Fix these targets' images (the buffer is sized from the first candidate: a
        decoder sets its own image size)."""
        nonlocal final
        if final is None:
            final = torch.zeros_like(imgs)
        for i in rows:
            final[i], stopped_at[i] = imgs[i], at

    def drop_finished() -> None:
        """Take the finished targets' rows, and the starts that lost a race, out of the
        batch (source, optimiser state, objective, median ring)."""
        nonlocal alive, alive_dev, objective
        gone = retired | done.repeat_interleave(n_starts) if DROP_FINISHED else retired
        still = ~gone[alive]
        if bool(still.all()):
            return
        keep_idx = torch.nonzero(still).flatten()
        source.keep_rows(keep_idx, opt)
        candidates.keep_rows(keep_idx.to(device))
        alive = alive[keep_idx]
        alive_dev = alive.to(device)
        objective = Objective([row_targets[i] for i in alive.tolist()], classifier.n_classes, preset.penalty, device)

    for step in range(preset.steps):
        if is_cancelled():
            cancelled = True
            break
        if amp:  # bf16 autocast for the training pass only; candidates and scores stay fp32
            with torch.autocast(device.type, dtype=torch.bfloat16):
                images = source()
                logits, layer_acts = classifier.logits_and_activations(source.classifier_view(view_batch(images.float(), preset.views)), objective.layers)
            images, logits, layer_acts = images.float(), logits.float(), {k: v.float() for k, v in layer_acts.items()}
        else:
            images = source()
            logits, layer_acts = classifier.logits_and_activations(source.classifier_view(view_batch(images, preset.views)), objective.layers)
        loss, act = objective.loss(logits, layer_acts, source.regularizer())
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if schedule is not None:
            schedule.step()
        row_act[alive_dev] = act.to(row_act.dtype)  # (detached)
        acts.append(row_act.view(n, n_starts).max(1).values)
        if step == 0:
            start = acts[0].float().cpu()
        candidates.record(step, images)
        last = step == preset.steps - 1
        if (step + 1) % check_every == 0 or last:
            imgs = check(step + 1)
            if keep_frames:
                frames.append(imgs)
            newly = ~done & (torch.nan_to_num(target_prob, nan=-1.0) >= (preset.early_stop if preset.early_stop else 2.0))
            if last:
                newly = ~done
            keep(torch.nonzero(newly).flatten().tolist(), imgs, step + 1)
            done |= newly
            if progress is not None:
                history = torch.stack(acts).float().cpu().tolist()
                progress(Progress(step + 1, preset.steps, history, list(checks), imgs, done.tolist()))
            if bool(done.all()):
                break
            if n_starts > 1 and preset.prune_after and step + 1 >= preset.prune_after and not bool(retired.any()):
                # from here on only each target's best start goes on
                retired = torch.ones(n_rows, dtype=torch.bool)
                retired[torch.arange(n) * n_starts + torch.tensor(chosen)] = False
                row_act[retired.to(device)] = -float("inf")  # the history follows the start that goes on
            drop_finished()
    if not bool(done.all()):  # cancelled: keep what each row has now
        imgs = check(step)
        keep(torch.nonzero(~done).flatten().tolist(), imgs, step)
    history = torch.stack(acts).float().cpu().tolist() if acts else []
    return RunResult(
        targets=list(targets), preset=preset, seed=seed, device=str(device), images=final,
        activation=history, checks=checks, start_activation=start.tolist(), steps=stopped_at,
        seconds=time.perf_counter() - t0, cancelled=cancelled, frames=frames, restart=chosen, bf16=amp,
    )
