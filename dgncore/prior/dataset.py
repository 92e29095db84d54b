"""A prior from the audited dataset: a decoder trained on the dataset's own images.

The paper trains its autoencoder on the classifier's training data; the pretrained
method's images can only show what its decoder can draw. A decoder that never saw the
audited data cannot draw a cue that exists only there (the built-in case's magenta stamp
is an example: the shipped decoder's best reconstruction of a stamped image has none).
An auditor has the data, so :func:`train_prior` trains a decoder on it
(:func:`dgncore.prior.training.pretrain` on the folder's images, at the model's input size)
and the audit's ``pretrained`` method uses it.

It is trained at the model's input size through the decoder's final resize, on the
images whole and unmirrored, and (given the audited classifier) with a small term on that
model's logits beside the pixel loss: a decoder trained on pixels alone at its native size
cannot draw fine detail the model may rely on (docs/audit.md, "A prior from the audited
dataset").

The decoder is cached by the folder's content (relative paths and file bytes, the hash
the exemplar index uses), the image size and the classifier's weights, under
``$DGN_CACHE/priors`` (default ``~/.cache/dgn-explorer/priors``): the same folder is
trained on once. Training saves its
state every :data:`CHECKPOINT_EVERY` steps, so a stopped or interrupted run resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dgncore import paths
from dgncore.cancel import Cancel, cancel_fn
from dgncore.errors import InputError

if TYPE_CHECKING:
    from dgncore.models.classifiers import Classifier

#: the default budget, the smallest measured to draw the built-in case's cue (docs/audit.md,
#: "A prior from the audited dataset")
DEFAULT_STEPS = 2400
#: the decoder's channel width: 0.25 takes half the time of 0.5 per step, and a budget
#: of steps matters more than width for drawing a small cue
WIDTH = 0.25
CHECKPOINT_EVERY = 25
#: the images whole (no crop, no mirror): the decoder learns each image where and at the
#: scale the classifier saw it, so a cue with a fixed place or pattern stays drawable
PHOTO_MIN_SCALE = 1.0
#: weight of the squared distance between the audited model's logits of the rebuilt and the
#: clean image: large enough that the decoder keeps what that model reads (0.01 taught it
#: streaks that fool the model and doubled the held-out pixel error), small enough that
#: the held-out pixel error does not grow (docs/audit.md)
LOGIT_WEIGHT = 0.001
#: decoders for inputs up to this size use 4 stages (58 px native), larger ones 5 (113 px)
FOUR_STAGES_UP_TO = 80
#: what an audit needs beside the prior's training, for :func:`prior_fits`
AUDIT_ALLOWANCE_SECONDS = 300.0
#: training measures the held-out tenth's reconstruction error this often and stops when
#: it has not improved for PATIENCE measurements ...
HELDOUT_EVERY = 100
PATIENCE = 5
#: ... or after this much wall time, whatever comes first (the learning rate decays over
#: whichever of steps and time runs out first)
BUDGET_SECONDS = 540.0

#: (stage, done, total, seconds left or None)
PriorProgress = Callable[[str, int, int, "float | None"], None]


class _Stopped(Exception):
    pass


def cache_dir() -> Path:
    return paths.cache_dir("priors")


def prior_fits(job_timeout: float) -> bool:
    """Whether training a prior and then auditing fits a job time limit (0: none), so that
    a page can have the prior on by default there and off, said, where it does not fit."""
    return not job_timeout or job_timeout >= BUDGET_SECONDS + AUDIT_ALLOWANCE_SECONDS


def dataset_key(folder: str | Path) -> str:
    """A hash of an image folder's contents (relative paths and bytes)."""
    from dgncore.data import folder_key, list_images

    root = Path(folder)
    paths, _labels, _truncated = list_images(root)
    return folder_key(root, paths)


def model_key(classifier: Classifier) -> str:
    """A hash of a classifier's weights (parameters and buffers, by name): a prior trained
    against one model's logits is not reused for another."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(classifier.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def prior_config(input_size: int, steps: int = DEFAULT_STEPS, classifier: Classifier | None = None) -> Any:
    """The :class:`~dgncore.prior.training.PretrainConfig` of a dataset prior for a model whose
    input is ``input_size`` px: trained on the folder's images only, at that size; with
    ``classifier`` the loss has the :data:`LOGIT_WEIGHT` term on that model's logits (the
    config names it, for the record)."""
    from dgncore.prior.training import LOGITS, PretrainConfig

    if not 16 <= input_size <= 512:
        raise InputError(f"the model's input size {input_size} is outside 16-512 px")
    stages = 4 if input_size <= FOUR_STAGES_UP_TO else 5
    logits = {"feature_weight": LOGIT_WEIGHT, "feature_model": classifier.name, "feature_layer": LOGITS} if classifier is not None else {}
    return PretrainConfig(width=WIDTH, stages=stages, out_size=input_size, steps=steps, data="folder", checkpoint_every=CHECKPOINT_EVERY,
                          photo_min_scale=PHOTO_MIN_SCALE, photo_flip=False, train_at_out_size=True, heldout_every=HELDOUT_EVERY,
                          patience=PATIENCE, max_seconds=BUDGET_SECONDS, **logits)


def prior_path(folder: str | Path, input_size: int, steps: int = DEFAULT_STEPS, classifier: Classifier | None = None) -> Path:
    cfg = prior_config(input_size, steps, classifier)
    stop = f"h{cfg.heldout_every}p{cfg.patience}t{cfg.max_seconds:g}"
    against = f"m{model_key(classifier)}w{cfg.feature_weight:g}" if classifier is not None else "pixels"
    return cache_dir() / (f"{dataset_key(folder)}-{input_size}px-s{cfg.stages}w{cfg.width:g}c{cfg.photo_min_scale:g}-{steps}-{stop}"
                          f"-{against}.safetensors")


@dataclass(frozen=True)
class Prior:
    path: Path
    #: True when it came from the cache (no training now)
    cached: bool
    meta: dict[str, Any]


def train_prior(
    folder: str | Path,
    input_size: int,
    steps: int = DEFAULT_STEPS,
    progress: PriorProgress | None = None,
    cancel: Cancel = None,
    force: bool = False,
    device: str = "cpu",
    classifier: Classifier | None = None,
) -> Prior:
    """The dataset prior of ``folder`` for ``input_size`` px: from the cache, or trained now
    (resuming an interrupted run). ``classifier``: the audited model, whose logits the
    prior's loss keeps (None: pixels only). ``progress(stage, step, total, seconds_left)``; when
    ``cancel`` returns True training stops at the next step with an InputError, keeping its
    last saved state (every :data:`CHECKPOINT_EVERY` steps) for the next call."""
    import json

    from dgncore.prior.training import pretrain, state_path_for

    if not 1 <= steps <= 100_000:
        raise InputError("prior steps must be between 1 and 100000")
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"dataset folder {str(root)[:120]} does not exist")
    is_cancelled = cancel_fn(cancel)
    report = progress or (lambda *_a: None)
    report("hashing the dataset", 0, 1, None)
    path = prior_path(root, input_size, steps, classifier)
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file() and not force:
        return Prior(path, True, json.loads(sidecar.read_text("utf-8")))
    if force:
        state_path_for(path).unlink(missing_ok=True)
    config = prior_config(input_size, steps, classifier)
    t0 = time.perf_counter()
    first: list[int] = []

    def on_step(step: int, total: int, loss: float) -> None:
        if is_cancelled():
            raise _Stopped
        if not first:
            first.append(step - 1)  # where a resumed run started
        done_now = step - first[0]
        elapsed = time.perf_counter() - t0
        left = elapsed / done_now * (total - step) if done_now >= 3 else None
        if left is not None and config.max_seconds:  # the time budget may end it first (for a resumed run, whose
            left = min(left, max(0.0, config.max_seconds - elapsed))  # earlier time is not counted here, this overstates)
        report(f"training the dataset prior (loss {loss:.4f})", step, total, left)

    try:
        meta = pretrain(config, path, images_dir=root, progress=on_step, resume=True, command=f"audit --train-prior ({root.name})",
                        device=device, comparator=classifier)
    except _Stopped:
        raise InputError("training the dataset prior was stopped; it resumes from its last saved step next time") from None
    state_path_for(path).unlink(missing_ok=True)  # finished: the decoder file is what is kept
    meta["dataset"] = {"folder": str(root), "key": dataset_key(root)}
    from dgncore.data import write_json

    write_json(meta, sidecar)
    return Prior(path, False, meta)


__all__ = ["BUDGET_SECONDS", "DEFAULT_STEPS", "LOGIT_WEIGHT", "Prior", "cache_dir", "dataset_key", "model_key", "prior_config", "prior_fits",
           "prior_path", "train_prior"]
