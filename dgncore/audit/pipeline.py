"""The whole audit in one call, for the command line and a page: model, prior, index, drawing, intervention, report, with progress."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from dgncore.audit.builtin import audit_builtin
from dgncore.audit.intervention import InterventionConfig
from dgncore.audit.methods import DEFAULT_METHODS, parse_methods
from dgncore.audit.run import run_audit
from dgncore.cancel import Cancel, cancel_fn
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier


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


class ProgressClock:
    """Turns the audit's progress calls (stage, count, phase and, while drawing, the
    optimisation step) into :class:`AuditProgress` with a time-left estimate per phase
    (elapsed / fraction done x fraction left; in the generation phase the fraction counts
    the optimisation steps of the current batch)."""

    def __init__(self, sink: Callable[[AuditProgress], None], phases: Sequence[str]) -> None:
        self.sink, self.phases = sink, list(phases)
        self.t0 = time.perf_counter()
        self.phase: str | None = None
        self.phase_t0 = self.t0

    def __call__(self, stage: str, done: int, total: int, left: float | None = None, *, phase: str,
                 step: tuple[int, int] | None = None) -> None:
        now = time.perf_counter()
        if phase != self.phase:
            self.phase, self.phase_t0 = phase, now
        frac = done / total if total else 0.0
        if step is not None and total and step[1]:
            frac = (done + step[0] / step[1]) / total
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
    cancel: Cancel = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Audit a model and write its report folder; the one call the CLI and a page make.

    ``model``: a built-in name (``planted``, ``planted-control``, ``planted-sepia@0.7``,
    ...), a model spec for :func:`~dgncore.models.classifiers.load_classifier` (``NAME.pt`` with
    its sidecar, ``efficientnet_lite0``, ...) or a loaded :class:`Classifier`
    (``allow_torchscript``: the caller's hosting policy for TorchScript files).
    ``train_prior``: train (or take from the cache) a decoder on the dataset's images
    (:mod:`dgncore.prior.dataset`) and use it for the ``pretrained`` method. ``intervention``:
    with a dataset, rank the classes by confirmation by intervention (None: skip).
    ``progress`` gets :class:`AuditProgress`; ``cancel`` (a function or an Event) stops
    the run with an InputError at the next check - images already made and a prior's
    last saved state are kept and reused by the next run. ``kwargs`` go to
    :func:`run_audit` (classes, methods, seeds, steps, k, samples, exemplars, ...)."""
    from dgncore.audit import planted
    from dgncore.prior import dataset as prior_mod

    phases = (["model"] if isinstance(model, str) and planted.is_builtin(model) else []) + (["prior"] if train_prior else []) \
        + (["index"] if dataset or isinstance(model, str) and planted.is_builtin(model) else []) + ["generate"] \
        + (["intervention"] if intervention is not None else []) + ["report"]
    clock = ProgressClock(progress or (lambda _p: None), phases)
    is_cancelled = cancel_fn(cancel)
    built = None
    if isinstance(model, str) and planted.is_builtin(model):
        built = planted.builtin(model, progress=lambda step, total, _loss: clock("training the built-in model (once)", step, total, phase="model"))
        clf = built.classifier()
        dataset = dataset or built.samples
    elif isinstance(model, Classifier):
        clf = model
    else:
        from dgncore.models.classifiers import load_classifier

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
                                    progress=lambda st, d, t, left: clock(st, d, t, left, phase="prior"), cancel=is_cancelled,
                                    device=str(clf.device), classifier=clf)  # where the audited model runs, against its logits
        kwargs["checkpoint"] = got.path
        kwargs["methods"] = parse_methods(kwargs.get("methods", DEFAULT_METHODS))
        extra["prior"] = {"checkpoint": str(got.path), "cached": got.cached, "steps": got.meta.get("steps_done"),
                          "seconds": got.meta.get("seconds"), "final_loss": got.meta.get("final_loss"),
                          "dataset_key": (got.meta.get("dataset") or {}).get("key"), "images": (got.meta.get("data") or {}).get("photos")}
    if built is not None:
        return audit_builtin(out_dir, model=built, dataset=dataset, progress=clock, cancel=cancel, intervention=intervention, extra=extra, **kwargs)
    return run_audit(clf, out_dir, dataset=dataset, progress=clock, cancel=cancel, intervention=intervention, extra=extra or None, **kwargs)
