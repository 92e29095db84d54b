"""The job queue: every generation request from every session waits its turn in one FIFO.

Concurrent users queue instead of thrashing the CPU/GPU. Two implementations behind one
interface (:class:`JobQueue`):

- :class:`LocalQueue` (default): an in-process FIFO per device and one worker thread per
  device; a process-wide singleton (:func:`get_queue`). A job keeps running when the
  browser session that sent it goes away, and its result is saved.
- :class:`RedisQueue` (when ``REDIS_URL`` is set): the same jobs through RQ on a Redis
  server, run by ``python -m dgncore worker`` processes, possibly on other machines that
  share the results folder. Progress travels in ``job.meta``; cancelling sets a Redis key
  that the running job's cancel callback reads.

Both run a job with :func:`execute`, which calls :func:`dgncore.api.generate`, so a job's
result is the same PNG + JSON (written atomically) as the CLI's.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import logging
import math
import re
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Literal, Mapping

from .errors import InputError
from .hosting import HostedSettings
from .presets import DEFAULT_METHOD

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINAL_STATES = ("done", "failed", "cancelled")
MAX_TARGET_CHARS = 500
#: preset settings a job may change, with their types
OVERRIDES: dict[str, type] = {"lr": float, "penalty": float, "reg_weight": float, "noise_sigma": float, "early_stop": float, "final": str}
PREVIEW_SIDE = 256
#: steps of activation history a status carries
MAX_HISTORY = 2000
PREVIEW_EVERY_S = 1.0
#: finished jobs whose status a LocalQueue keeps
KEEP_FINISHED = 2000
_SAFE_PART = re.compile(r"^[\w][\w.+\- ]{0,79}$")


# --------------------------------------------------------------------------- the request


class _Spec:
    """What both kinds of job share: plain data that travels through Redis as JSON, and
    an output folder relative to the results folder."""

    #: the fields a job must name
    REQUIRED: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            raise InputError("a job must be a mapping of settings")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown job setting(s): {', '.join(sorted(map(str, unknown)))[:120]}")
        for name in cls.REQUIRED:
            if name not in data:
                raise InputError(f"a job needs {name}")
        return cls(**dict(data))

    def resolve_out_dir(self, settings: HostedSettings) -> Path:
        out = Path(self.out_dir)  # type: ignore[attr-defined]
        return out if out.is_absolute() else Path(settings.results_dir) / out


@dataclass(frozen=True)
class JobSpec(_Spec):
    """One generation request: everything :func:`execute` needs, as plain data (it
    travels through Redis as JSON)."""

    REQUIRED = ("targets",)

    targets: tuple[str, ...]
    model: str = "efficientnet_lite0"
    method: str = DEFAULT_METHOD
    steps: int | None = None
    seed: int = 0
    size: int | None = None
    width: float | None = None
    #: folder of the results, relative to the results folder (``DGN_RESULTS_DIR``)
    out_dir: str = "."
    weights: str | None = None
    device: str = "auto"
    reuse: bool = True
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: the name stored in the records (default: ``model``), e.g. for an uploaded file
    model_name: str | None = None
    #: also write ``<stem>.gif``: the optimisation, a frame every 10 steps
    gif: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", (self.targets,))
        elif isinstance(self.targets, (list, tuple)):
            object.__setattr__(self, "targets", tuple(self.targets))

    def validate(self, settings: HostedSettings):
        """Check every field against the server's limits (no model is loaded); return the
        preset the job will run with. Bad values are one-line InputErrors."""
        from .api import make_preset
        from .optimize import MAX_BATCH, MAX_SEED
        from .presets import PRESETS

        targets = self.targets
        if not isinstance(targets, tuple) or not targets:
            raise InputError("give at least one target, e.g. class:tench")
        limit = min(settings.max_batch, MAX_BATCH)
        if len(targets) > limit:
            raise InputError(f"at most {limit} targets in one job on this server, got {len(targets)}")
        for t in targets:
            if not isinstance(t, str) or not t.strip():
                raise InputError("every target must be text like class:tench")
            if len(t) > MAX_TARGET_CHARS:
                raise InputError(f"target text is too long (over {MAX_TARGET_CHARS} characters)")
        if len(set(t.strip() for t in targets)) != len(targets):
            raise InputError("the same target is asked for twice in one job")
        _check_int("seed", self.seed, 0, MAX_SEED)
        if self.steps is not None:
            _check_int("steps", self.steps, 1, settings.max_steps)
        if self.size is not None:
            _check_int("image size", self.size, 16, settings.max_size)
        if self.width is not None:
            _check_number("width", self.width, 0.05, 2.0)
        if not isinstance(self.method, str) or self.method.strip().lower() not in PRESETS:
            shown = self.method[:40] if isinstance(self.method, str) else type(self.method).__name__
            raise InputError(f"unknown method {shown!r}: choose one of {', '.join(PRESETS)}")
        _check_model(self.model, self.weights, self.model_name, self.device, settings)
        if not isinstance(self.reuse, bool) or not isinstance(self.gif, bool):
            raise InputError("reuse and gif must be true or false")
        _check_out_dir(self.out_dir, settings)
        overrides = _check_overrides(self.overrides)
        early_stop = overrides.pop("early_stop", None)
        preset = make_preset(self.method, steps=self.steps, size=self.size, width=self.width, **overrides)
        if early_stop is not None:
            preset = preset.replace(early_stop=early_stop) if early_stop > 0 else dataclasses.replace(preset, early_stop=None)
        if preset.steps > settings.max_steps:
            raise InputError(f"{preset.name} runs {preset.steps} steps; this server allows {settings.max_steps}: ask for fewer steps")
        if preset.generator.out_size > settings.max_size:
            raise InputError(f"{preset.name} makes {preset.generator.out_size}px images; this server allows {settings.max_size}px: ask for a smaller size")
        return preset

    def summary(self) -> dict[str, Any]:
        """What the job log and RQ's job description say about the job."""
        return {"kind": "generate", "model": self.model_name or self.model, "method": self.method, "steps": self.steps, "targets": len(self.targets)}


@dataclass(frozen=True)
class AuditSpec(_Spec):
    """One bias audit (:func:`dgncore.audit.run_audit`, or :func:`~dgncore.audit.audit_builtin`
    for a built-in planted-shortcut model) as a job.

    An audit is not a :class:`JobSpec`: it has no target list, it makes many batches
    (methods x seeds) and its output is a report folder rather than one record per
    target. It still goes through the same FIFO as the generation jobs, so that it
    takes its turn on the device instead of competing with them for it, keeps running
    when its browser tab is closed, counts against the session's limit, obeys the
    server's step limit and time limit, and is cancelled the same way. Progress comes
    as ``stage`` (e.g. ``untrained seed 1: step 40/200``), ``step`` and ``total`` (of the
    current phase: method x seed batches while generating), ``phase``, ``phase_no`` of ``phases`` and ``left_s``
    (:class:`dgncore.audit.AuditProgress`)."""

    REQUIRED = ("out_dir",)

    #: the report folder (``report.json``, ``report.html``, images), relative to the results folder
    out_dir: str
    #: ``planted`` or ``planted-control`` (a built-in model with a known shortcut), or None for ``model``
    builtin: str | None = "planted"
    model: str | None = None
    weights: str | None = None
    model_name: str | None = None
    #: an ImageFolder of samples (default for a built-in model: its own sample folder)
    dataset: str | None = None
    #: class names or indices (default: the dataset's classes)
    classes: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("untrained",)
    seeds: tuple[int, ...] = (0, 1, 2)
    k: int = 1
    steps: int | None = None
    samples: int = 6
    exemplars: int = 4
    device: str = "auto"
    #: train (or reuse) a decoder on the dataset's images for the pretrained method (:mod:`dgncore.prior`)
    train_prior: bool = False
    prior_steps: int | None = None
    #: rank the classes by confirmation by intervention (:mod:`dgncore.intervention`; needs a dataset or a built-in model)
    intervene: bool = False
    kind: str = "audit"

    def __post_init__(self) -> None:
        for name in ("classes", "methods", "seeds"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def validate(self, settings: HostedSettings) -> None:
        """Check every field against the server's limits (nothing is loaded)."""
        from .audit import parse_methods, parse_seeds
        from .planted import is_builtin
        from .optimize import MAX_SEED
        from .presets import get_preset

        if self.kind != "audit":
            raise InputError("an audit job has kind 'audit'")
        if not isinstance(self.methods, tuple) or not all(isinstance(m, str) for m in self.methods):
            raise InputError("methods must be a list of names")
        methods = parse_methods(self.methods)
        if not isinstance(self.seeds, tuple) or not all(isinstance(x, int) and not isinstance(x, bool) for x in self.seeds):
            raise InputError("seeds must be whole numbers")
        for s in parse_seeds(self.seeds):
            _check_int("seed", s, 0, MAX_SEED)
        _check_int("k (images per class, method and seed)", self.k, 1, 16)
        _check_int("samples", self.samples, 0, 64)
        _check_int("exemplars", self.exemplars, 0, 32)
        if not isinstance(self.train_prior, bool) or not isinstance(self.intervene, bool):
            raise InputError("train_prior and intervene must be true or false")
        if self.prior_steps is not None:
            _check_int("prior steps", self.prior_steps, 1, 100_000)
        if self.train_prior and self.builtin is None and self.dataset is None:
            raise InputError("training a prior needs the dataset")
        if self.steps is not None:
            _check_int("steps", self.steps, 1, settings.max_steps)
        else:
            for m in methods:
                if get_preset(m).steps > settings.max_steps:
                    raise InputError(f"{m} runs {get_preset(m).steps} steps; this server allows {settings.max_steps}: ask for fewer steps")
        if not isinstance(self.classes, tuple) or len(self.classes) > 200 or not all(isinstance(c, str) and 0 < len(c) <= 200 for c in self.classes):
            raise InputError("classes must be at most 200 names or indices")
        if self.builtin is not None:
            if not isinstance(self.builtin, str) or not is_builtin(self.builtin):
                raise InputError(f"unknown built-in model {str(self.builtin)[:40]!r}: use planted, planted-control or planted-KIND[@RATE|-control]")
            if self.model is not None or self.weights is not None:
                raise InputError("an audit names a built-in model or a model, not both")
            if not isinstance(self.device, str) or (settings.hosted and self.device != "auto"):
                raise InputError("the device is chosen by the server")
        else:
            _check_model(self.model, self.weights, self.model_name, self.device, settings)
        if self.dataset is not None:
            if not isinstance(self.dataset, str) or not 0 < len(self.dataset) <= 1000 or "\x00" in self.dataset:
                raise InputError("the dataset must be a folder path of 1-1000 characters")
            if settings.hosted and not settings.allow_uploads:
                raise InputError("sample folders cannot be used on this server")
        _check_out_dir(self.out_dir, settings)

    def summary(self) -> dict[str, Any]:
        return {"kind": "audit", "model": self.builtin or self.model_name or self.model, "method": ",".join(self.methods),
                "steps": self.steps, "targets": len(self.classes), "seeds": len(self.seeds)}


def spec_from_dict(data: Mapping[str, Any]) -> JobSpec | AuditSpec:
    """The job a dict describes (``kind: audit`` for an audit, else a generation job)."""
    if isinstance(data, Mapping) and data.get("kind") == "audit":
        return AuditSpec.from_dict(data)
    return JobSpec.from_dict(data)


def _check_model(model: Any, weights: Any, model_name: Any, device: Any, settings: HostedSettings) -> None:
    if not isinstance(model, str) or not 0 < len(model) <= 500:
        raise InputError("model name must be 1-500 characters of text")
    if weights is not None and not isinstance(weights, str):
        raise InputError("weights must be a file path")
    settings.check_model(model, weights)
    if not isinstance(device, str) or (settings.hosted and device != "auto"):
        raise InputError("the device is chosen by the server")
    if model_name is not None and (not isinstance(model_name, str) or not 0 < len(model_name) <= 200):
        raise InputError("the model's display name must be 1-200 characters")


def _check_int(what: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be a whole number, got {str(value)[:30]!r}")
    if not low <= value <= high:
        raise InputError(f"{what} must be between {low} and {high} on this server, got {value}")


def _check_number(what: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise InputError(f"{what} must be a number between {low:g} and {high:g}, got {str(value)[:30]!r}")


def _check_overrides(overrides: Any) -> dict[str, Any]:
    if not isinstance(overrides, Mapping):
        raise InputError("overrides must be a mapping of preset settings")
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in OVERRIDES:
            raise InputError(f"unknown setting {str(key)[:30]!r}: a job may change {', '.join(OVERRIDES)}")
        if value is None:
            continue
        if OVERRIDES[key] is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{key} must be a finite non-negative number, got {str(value)[:30]!r}")
            out[key] = float(value)
        else:
            if value not in ("last", "median"):
                raise InputError(f"final must be last or median, got {str(value)[:30]!r}")
            out[key] = value
    return out


def _check_out_dir(out_dir: Any, settings: HostedSettings) -> None:
    if not isinstance(out_dir, str) or not out_dir.strip() or len(out_dir) > 300 or "\x00" in out_dir:
        raise InputError("the output folder must be a path of 1-300 characters")
    if not settings.hosted:
        return
    posix, win = PurePosixPath(out_dir), PureWindowsPath(out_dir)
    if posix.is_absolute() or win.is_absolute() or win.drive or "\\" in out_dir:
        raise InputError("the output folder must be relative to the results folder on this server")
    for part in posix.parts:
        if part != "." and not _SAFE_PART.match(part):
            raise InputError(f"output folder part {part[:40]!r} is not allowed: letters, digits, . - _ and spaces")


# --------------------------------------------------------------------------- the status


@dataclass
class JobStatus:
    job_id: str
    state: JobState
    #: 1 = runs next; None unless queued
    position: int | None = None
    step: int = 0
    total: int = 0
    #: per target: the target probability of the latest 8-bit candidate (NaN for layer targets)
    probs: list[float] = field(default_factory=list)
    #: per target: PNG bytes of the latest candidate (at most PREVIEW_SIDE pixels), while running
    preview: list[bytes] | None = None
    #: per step, per target: a(target) in the training pass (the last MAX_HISTORY steps)
    activation: list[list[float]] = field(default_factory=list)
    #: per check: (step, per target the probability of the 8-bit candidate)
    checks: list[tuple[int, list[float]]] = field(default_factory=list)
    #: per target: whether its image is fixed (early stop)
    done: list[bool] = field(default_factory=list)
    #: what an audit job is doing now (its step and total count method x seed batches)
    stage: str = ""
    #: an audit job's phase (prior, index, generate, intervention, ...), which of how many, and the seconds left in it, when known
    phase: str = ""
    phase_no: int = 0
    phases: int = 0
    left_s: float | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    submitted: float | None = None
    started: float | None = None
    finished: float | None = None
    #: where the results are, as seen from this process
    out_dir: Path | None = None
    session_id: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def queue_wait(self) -> float | None:
        """Seconds between submission and start."""
        if self.submitted is None or self.started is None:
            return None
        return max(0.0, self.started - self.submitted)

    def as_progress(self):
        """The running job's state as :class:`dgncore.optimize.Progress` (what a progress
        callback of :func:`dgncore.api.generate` gets), or None before the first step."""
        from .data import load_image
        from .optimize import Progress

        if not self.preview or not self.total:
            return None
        import torch

        images = torch.stack([load_image(p) for p in self.preview])
        checks = [(int(s), [float("nan") if p is None else p for p in probs]) for s, probs in self.checks]
        return Progress(self.step, self.total, self.activation, checks, images, list(self.done) or [False] * len(images))

    def files(self) -> list[Path]:
        """The PNG and JSON of every saved result."""
        if self.out_dir is None:
            return []
        out = []
        for r in self.records:
            png = self.out_dir / r["png"]
            out += [png, png.with_suffix(".json")]
        return out


class JobQueue:
    """What the dashboard sees: submit, poll, cancel."""

    settings: HostedSettings

    def submit(self, spec: JobSpec | AuditSpec, session_id: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def status(self, job_id: str, preview: bool = True) -> JobStatus:  # pragma: no cover - interface
        """The job's state; ``preview=False`` leaves out the preview images (cheaper to poll)."""
        raise NotImplementedError

    def cancel(self, job_id: str, session_id: str | None = None) -> bool:  # pragma: no cover - interface
        """Cancel a queued or running job; False if it had already finished."""
        raise NotImplementedError

    def session_jobs(self, session_id: str) -> list[str]:  # pragma: no cover - interface
        """Ids of the session's jobs that are queued or running, oldest first."""
        raise NotImplementedError

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.1) -> JobStatus:
        """Poll until the job has finished (or ``timeout`` seconds passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status(job_id)
            if st.final or (deadline is not None and time.monotonic() > deadline):
                return st
            time.sleep(poll)

    def close(self) -> None:
        pass

    def retire(self) -> None:
        """Take no new jobs; finish the ones already submitted."""


def _check_session(session_id: Any) -> str:
    if not isinstance(session_id, str) or not 0 < len(session_id) <= 200:
        raise InputError("a session id must be 1-200 characters")
    return session_id


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


# --------------------------------------------------------------------------- running a job


def preview_pngs(images, side: int = PREVIEW_SIDE) -> list[bytes]:
    """(B, 3, S, S) images in [0, 1] -> small PNGs, one per row."""
    from PIL import Image

    from .data import to_uint8

    out = []
    for img in images:
        im = Image.fromarray(to_uint8(img))
        if max(im.size) > side:
            im = im.resize((side, side), Image.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def execute(
    spec: JobSpec | AuditSpec,
    settings: HostedSettings,
    report: Callable[[dict[str, Any]], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one job: load the classifier, parse the targets, :func:`generate`. Returns
    ``{"records": [...], "cancelled": bool}``. ``report`` gets ``{"step", "total",
    "probs", "preview"?}`` at every check (a preview at most once a second); ``cancel``
    is asked every step (a job past ``settings.job_timeout`` is cancelled too).
    An :class:`AuditSpec` goes to :func:`execute_audit`."""
    from .api import generate, parse_targets
    from .classifiers import load_classifier

    if isinstance(spec, AuditSpec):
        return execute_audit(spec, settings, report, cancel)
    preset = spec.validate(settings)
    should_stop = _Stopper(settings, cancel)

    last_preview = 0.0

    def progress(p) -> None:
        nonlocal last_preview
        if report is None:
            return
        info: dict[str, Any] = {
            "step": p.step, "total": p.total, "probs": list(p.checks[-1][1]) if p.checks else [],
            "activation": p.activation[-MAX_HISTORY:], "checks": [(s, list(c)) for s, c in p.checks], "done": list(p.done),
        }
        now = time.monotonic()
        if now - last_preview >= PREVIEW_EVERY_S or p.step >= p.total or all(p.done):
            last_preview = now
            info["preview"] = preview_pngs(p.images)
        report(info)

    if should_stop():
        return {"records": [], "cancelled": True}
    device = spec.device if spec.device != "auto" else settings.device
    clf = load_classifier(spec.model, weights=spec.weights, device=device, allow_torchscript=settings.allow_torchscript)
    targets = parse_targets(list(spec.targets), clf)
    out_dir = spec.resolve_out_dir(settings)
    records = generate(
        clf, targets, preset, out_dir, seed=spec.seed, model=spec.model_name or spec.model,
        progress=progress, cancel=should_stop, reuse=spec.reuse, keep_frames=spec.gif,
    )
    if spec.gif:
        from .results import save_gif

        for r in records:
            if r.get("_frames"):
                save_gif(out_dir, r, r["_frames"])
    records = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
    cancelled = any(r.get("cancelled") for r in records)
    out: dict[str, Any] = {"records": records, "cancelled": cancelled}
    if should_stop.timed_out:
        out["error"] = f"the job ran longer than {settings.job_timeout} s and was stopped; what it had is saved"
    return out


class _Stopper:
    """``cancel()``, or true once the job has run past ``settings.job_timeout``."""

    def __init__(self, settings: HostedSettings, cancel: Callable[[], bool] | None) -> None:
        self.limit, self.cancel = settings.job_timeout, cancel
        self.started = time.monotonic()
        self.timed_out = False

    def __call__(self) -> bool:
        if self.limit and time.monotonic() - self.started > self.limit:
            self.timed_out = True
            return True
        return bool(self.cancel and self.cancel())


def execute_audit(
    spec: AuditSpec,
    settings: HostedSettings,
    report: Callable[[dict[str, Any]], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one audit job; the report is ``report.json`` in its out_dir. Returns
    ``{"records": [], "cancelled": bool, "report": "report.json"?}``. ``report`` gets
    ``{"stage", "step", "total"}``. A cancelled or timed-out audit writes no report (the
    images it finished are kept and reused by the next run with the same settings)."""
    from .audit import audit
    from .classifiers import load_classifier

    spec.validate(settings)
    should_stop = _Stopper(settings, cancel)

    def progress(p: Any) -> None:
        if report is not None:
            report({"stage": p.stage, "step": p.done, "total": p.total, "phase": p.phase, "phase_no": p.phase_no, "phases": p.phases,
                    "left_s": p.phase_left_s})

    if should_stop():
        return {"records": [], "cancelled": True}
    out_dir = spec.resolve_out_dir(settings)
    from .intervention import InterventionConfig

    common: dict[str, Any] = dict(classes=list(spec.classes) or None, methods=list(spec.methods), seeds=list(spec.seeds), k=spec.k,
                                  steps=spec.steps, samples=spec.samples, exemplars=spec.exemplars, progress=progress, cancel=should_stop,
                                  train_prior=spec.train_prior, prior_steps=spec.prior_steps,
                                  intervention=InterventionConfig() if spec.intervene else None)
    try:
        if spec.builtin is not None:
            audit(spec.builtin, out_dir, dataset=spec.dataset, **common)
        else:
            clf = load_classifier(spec.model, weights=spec.weights, device=spec.device if spec.device != "auto" else settings.device,
                                  allow_torchscript=settings.allow_torchscript)
            audit(clf, out_dir, dataset=spec.dataset, model_name=spec.model_name or spec.model, **common)
    except InputError:
        if not should_stop():
            raise
        out: dict[str, Any] = {"records": [], "cancelled": True}
        if should_stop.timed_out:
            out["error"] = f"the audit ran longer than {settings.job_timeout} s and was stopped; the images it finished are kept"
        return out
    return {"records": [], "cancelled": False, "report": "report.json"}


def log_job(settings: HostedSettings, spec: JobSpec | AuditSpec, st: JobStatus) -> None:
    """One JSON line per finished job in ``settings.job_log`` (for operators and the load
    test): when it was submitted, started and finished, what it made."""
    if settings.job_log is None:
        return
    import json

    entry = {
        "job": st.job_id, "state": st.state, "submitted": st.submitted, "started": st.started, "finished": st.finished,
        "queue_wait": st.queue_wait, **spec.summary(), "out_dir": spec.out_dir, "files": [r.get("png") for r in st.records], "error": st.error,
    }
    try:
        settings.job_log.parent.mkdir(parents=True, exist_ok=True)
        with open(settings.job_log, "a", encoding="utf-8") as f:  # one short O_APPEND write per line
            f.write(json.dumps(entry) + "\n")
    except OSError as e:
        log.warning("cannot write the job log %s: %s", settings.job_log, e)


# --------------------------------------------------------------------------- in-process queue


@dataclass
class _LocalJob:
    spec: JobSpec | AuditSpec
    session_id: str
    device: str
    status: JobStatus
    cancel: threading.Event = field(default_factory=threading.Event)


class LocalQueue(JobQueue):
    """One FIFO per device, one worker thread per device (started on first use)."""

    def __init__(self, settings: HostedSettings | None = None) -> None:
        self.settings = settings or HostedSettings.from_env()
        self._cond = threading.Condition()
        self._jobs: collections.OrderedDict[str, _LocalJob] = collections.OrderedDict()
        self._pending: dict[str, collections.deque[str]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closed = False
        self._retired = False

    def _device_key(self, spec: JobSpec | AuditSpec) -> str:
        from .classifiers import pick_device

        return str(pick_device(spec.device if spec.device != "auto" else self.settings.device))

    def submit(self, spec: JobSpec | AuditSpec, session_id: str) -> str:
        _check_session(session_id)
        if not isinstance(spec, (JobSpec, AuditSpec)):
            raise InputError("submit needs a JobSpec or an AuditSpec")
        spec.validate(self.settings)
        device = self._device_key(spec)
        with self._cond:
            if self._closed or self._retired:
                raise InputError("the job queue is shut down")
            active = self._active(session_id)
            if len(active) >= self.settings.max_queued_per_session:
                raise InputError(
                    f"you already have {len(active)} jobs waiting or running (the limit is "
                    f"{self.settings.max_queued_per_session}): wait for one to finish or cancel one"
                )
            waiting = sum(len(q) for q in self._pending.values())
            if waiting >= self.settings.max_queue:
                raise InputError(f"the server is busy ({waiting} jobs waiting): try again in a few minutes")
            job_id = uuid.uuid4().hex
            status = JobStatus(job_id, "queued", submitted=time.time(), total=0, out_dir=spec.resolve_out_dir(self.settings), session_id=session_id)
            self._jobs[job_id] = _LocalJob(spec, session_id, device, status)
            self._pending.setdefault(device, collections.deque()).append(job_id)
            worker = self._workers.get(device)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(target=self._work, args=(device,), name=f"dgn-worker-{device}", daemon=True)
                self._workers[device] = worker
                worker.start()
            self._cond.notify_all()
        return job_id

    def _active(self, session_id: str) -> list[str]:
        return [i for i, j in self._jobs.items() if j.session_id == session_id and not j.status.final]

    def session_jobs(self, session_id: str) -> list[str]:
        with self._cond:
            return self._active(session_id)

    def status(self, job_id: str, preview: bool = True) -> JobStatus:
        with self._cond:
            job = self._jobs.get(job_id) if isinstance(job_id, str) else None
            if job is None:
                raise InputError("no such job (it may have expired)")
            st = dataclasses.replace(job.status, records=list(job.status.records))
            if st.state == "queued":
                st.position = self._pending[job.device].index(job_id) + 1
            return st

    def cancel(self, job_id: str, session_id: str | None = None) -> bool:
        with self._cond:
            job = self._jobs.get(job_id) if isinstance(job_id, str) else None
            if job is None:
                raise InputError("no such job (it may have expired)")
            if session_id is not None and job.session_id != session_id:
                raise InputError("this job belongs to another session")
            if job.status.final:
                return False
            job.cancel.set()
            if job.status.state == "queued":
                self._pending[job.device].remove(job_id)
                job.status.state = "cancelled"
                job.status.finished = time.time()
            return True

    def _work(self, device: str) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._pending.get(device):
                    if self._retired:
                        return
                    self._cond.wait(timeout=1.0)
                if self._closed:
                    return
                job_id = self._pending[device].popleft()
                job = self._jobs[job_id]
                job.status.state = "running"
                job.status.started = time.time()
            self._run(job)

    def _run(self, job: _LocalJob) -> None:
        st = job.status

        def report(info: dict[str, Any]) -> None:
            with self._cond:
                st.step, st.total, st.probs, st.stage = info["step"], info["total"], info.get("probs", []), info.get("stage", "")
                st.phase, st.phase_no, st.phases, st.left_s = info.get("phase", ""), info.get("phase_no", 0), info.get("phases", 0), info.get("left_s")
                st.activation, st.checks, st.done = info.get("activation", []), info.get("checks", []), info.get("done", [])
                if "preview" in info:
                    st.preview = info["preview"]

        try:
            result = execute(job.spec, self.settings, report, job.cancel.is_set)
            state: JobState = "cancelled" if result["cancelled"] else "done"
            error = result.get("error")
            records = result["records"]
        except InputError as e:
            state, error, records = "failed", _one_line(e), []
        except Exception as e:  # noqa: BLE001 - a bug must not kill the worker thread
            log.error("job %s failed:\n%s", st.job_id, traceback.format_exc())
            state, error, records = "failed", f"internal error: {type(e).__name__}: {_one_line(e)}", []
        with self._cond:
            st.state, st.error, st.records, st.finished = state, error, records, time.time()
            st.preview = None
            self._prune()
            final = dataclasses.replace(st)
        log_job(self.settings, job.spec, final)

    def _prune(self) -> None:
        finished = [i for i, j in self._jobs.items() if j.status.final]
        for job_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]

    def retire(self) -> None:
        with self._cond:
            self._retired = True
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return all(j.status.final for j in self._jobs.values())

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the workers (tests; a server just exits)."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                job.cancel.set()
            self._cond.notify_all()
            workers = list(self._workers.values())
        for w in workers:
            w.join(timeout)


# --------------------------------------------------------------------------- RQ on Redis

CANCEL_KEY = "dgn:cancel:{}"
PREVIEW_KEY = "dgn:preview:{}"
SESSION_KEY = "dgn:session:{}"
CANCEL_POLL_S = 0.25


def _serializer():
    from rq.serializers import JSONSerializer

    return JSONSerializer


class RedisQueue(JobQueue):
    """The same interface on RQ; jobs run in ``python -m dgncore worker`` processes."""

    def __init__(self, settings: HostedSettings | None = None, connection=None) -> None:
        from redis import Redis
        from rq import Queue

        self.settings = settings or HostedSettings.from_env()
        if connection is None and not self.settings.redis_url:
            raise InputError("RedisQueue needs REDIS_URL")
        self.redis = connection or Redis.from_url(self.settings.redis_url)
        self.queue = Queue(self.settings.queue_name, connection=self.redis, serializer=_serializer())

    def _fetch(self, job_id: str):
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        if not isinstance(job_id, str) or not re.fullmatch(r"[0-9a-f]{32}", job_id):
            raise InputError("no such job (it may have expired)")
        try:
            return Job.fetch(job_id, connection=self.redis, serializer=_serializer())
        except NoSuchJobError:
            raise InputError("no such job (it may have expired)") from None

    def _active(self, session_id: str) -> list[str]:
        key = SESSION_KEY.format(session_id)
        ids = sorted((i.decode() if isinstance(i, bytes) else i) for i in self.redis.smembers(key))
        active = []
        for job_id in ids:
            try:
                st = self.status(job_id)
            except InputError:
                st = None
            if st is None or st.final:
                self.redis.srem(key, job_id)
            else:
                active.append((st.submitted or 0, job_id))
        return [i for _, i in sorted(active)]

    def session_jobs(self, session_id: str) -> list[str]:
        return self._active(_check_session(session_id))

    def submit(self, spec: JobSpec | AuditSpec, session_id: str) -> str:
        _check_session(session_id)
        if not isinstance(spec, (JobSpec, AuditSpec)):
            raise InputError("submit needs a JobSpec or an AuditSpec")
        spec.validate(self.settings)
        timeout = self.settings.job_timeout + 120 if self.settings.job_timeout else -1
        with self.redis.lock(f"dgn:lock:session:{session_id}", timeout=10, blocking_timeout=10):
            active = self._active(session_id)
            if len(active) >= self.settings.max_queued_per_session:
                raise InputError(
                    f"you already have {len(active)} jobs waiting or running (the limit is "
                    f"{self.settings.max_queued_per_session}): wait for one to finish or cancel one"
                )
            waiting = self.queue.count
            if waiting >= self.settings.max_queue:
                raise InputError(f"the server is busy ({waiting} jobs waiting): try again in a few minutes")
            job_id = uuid.uuid4().hex
            self.queue.enqueue(
                "dgncore.jobs.execute_rq", spec.to_dict(),
                job_id=job_id, job_timeout=timeout, result_ttl=7 * 24 * 3600, failure_ttl=7 * 24 * 3600,
                meta={"session": session_id, "submitted": time.time()},
                description="dgn " + " ".join(f"{k}={v}" for k, v in spec.summary().items()),
            )
            key = SESSION_KEY.format(session_id)
            self.redis.sadd(key, job_id)
            self.redis.expire(key, 7 * 24 * 3600)
        return job_id

    def status(self, job_id: str, preview: bool = True) -> JobStatus:
        job = self._fetch(job_id)
        raw = job.get_status(refresh=True)
        rq_state = str(getattr(raw, "value", raw) or "queued")
        meta = job.get_meta(refresh=True) or {}
        spec_dict = job.args[0] if job.args else {}
        out_dir = None
        try:
            out_dir = spec_from_dict(spec_dict).resolve_out_dir(self.settings)
        except (InputError, TypeError):
            pass
        st = JobStatus(
            job_id, "queued", submitted=meta.get("submitted"), started=meta.get("started"), finished=meta.get("finished"),
            step=int(meta.get("step", 0)), total=int(meta.get("total", 0)), probs=list(meta.get("probs", [])),
            activation=list(meta.get("activation", [])), checks=[(s, c) for s, c in meta.get("checks", [])], done=list(meta.get("done", [])),
            stage=str(meta.get("stage", "")), phase=str(meta.get("phase", "")), phase_no=int(meta.get("phase_no", 0)), phases=int(meta.get("phases", 0)),
            left_s=meta.get("left_s"), out_dir=out_dir, session_id=meta.get("session"),
        )
        if preview:
            raw = self.redis.get(PREVIEW_KEY.format(job_id))
            if raw:
                import base64
                import json

                st.preview = [base64.b64decode(p) for p in json.loads(raw)]
        if rq_state in ("queued", "deferred", "scheduled"):
            pos = job.get_position()
            st.position = None if pos is None else pos + 1
            if self.redis.exists(CANCEL_KEY.format(job_id)):
                st.state = "cancelled"
        elif rq_state == "started":
            st.state = "running"
        elif rq_state == "finished":
            result = job.return_value() or {}
            st.records = list(result.get("records", []))
            st.error = result.get("error")
            if result.get("input_error"):
                st.state = "failed"
            else:
                st.state = "cancelled" if result.get("cancelled") else "done"
        elif rq_state == "failed":
            st.state = "failed"
            res = job.latest_result()
            exc = (getattr(res, "exc_string", None) or job.exc_info or "").strip()
            st.error = "internal error: " + (exc.splitlines()[-1][:300] if exc else "the worker failed")
        else:  # canceled, stopped
            st.state = "cancelled"
        return st

    def cancel(self, job_id: str, session_id: str | None = None) -> bool:
        job = self._fetch(job_id)
        if session_id is not None and (job.meta or {}).get("session") != session_id:
            raise InputError("this job belongs to another session")
        st = self.status(job_id)
        if st.final:
            return False
        self.redis.set(CANCEL_KEY.format(job_id), 1, ex=7 * 24 * 3600)
        if st.state == "queued":
            try:
                job.cancel()
            except Exception:  # noqa: BLE001 - already dequeued: the worker sees the flag
                pass
        return True

    def close(self) -> None:
        self.redis.close()


def execute_rq(spec_dict: dict[str, Any]) -> dict[str, Any]:
    """The function RQ workers run: :func:`execute` with progress in ``job.meta`` and the
    cancel flag read from Redis."""
    import base64
    import json

    from rq import get_current_job

    job = get_current_job()
    settings = HostedSettings.from_env()
    flag = CANCEL_KEY.format(job.id)
    last_poll, cancelled = 0.0, False

    def cancel() -> bool:
        nonlocal last_poll, cancelled
        now = time.monotonic()
        if not cancelled and now - last_poll >= CANCEL_POLL_S:
            last_poll = now
            cancelled = bool(job.connection.exists(flag))
        return cancelled

    def report(info: dict[str, Any]) -> None:
        nan = lambda xs: [None if x != x else x for x in xs]  # noqa: E731 - JSON has no NaN
        job.meta.update({
            "step": info["step"], "total": info["total"], "probs": nan(info.get("probs", [])), "done": info.get("done", []),
            "activation": [nan(row) for row in info.get("activation", [])], "checks": [[s, nan(c)] for s, c in info.get("checks", [])],
            "stage": info.get("stage", ""), "phase": info.get("phase", ""), "phase_no": info.get("phase_no", 0), "phases": info.get("phases", 0),
            "left_s": info.get("left_s"),
        })
        if "preview" in info:  # beside the meta, so that polling the status stays cheap
            job.connection.set(PREVIEW_KEY.format(job.id), json.dumps([base64.b64encode(b).decode("ascii") for b in info["preview"]]), ex=24 * 3600)
        job.save_meta()

    job.meta["started"] = time.time()
    job.save_meta()
    spec = None
    try:
        spec = spec_from_dict(spec_dict)
        result = execute(spec, settings, report, cancel)
    except InputError as e:
        result = {"records": [], "cancelled": False, "error": _one_line(e), "input_error": True}
    finally:
        job.meta["finished"] = time.time()
        job.save_meta()
    if spec is not None:
        state: JobState = "failed" if result.get("input_error") else ("cancelled" if result["cancelled"] else "done")
        log_job(settings, spec, JobStatus(
            job.id, state, submitted=job.meta.get("submitted"), started=job.meta["started"], finished=job.meta["finished"],
            records=result["records"], error=result.get("error"),
        ))
    return result


# --------------------------------------------------------------------------- the singleton

_queue: JobQueue | None = None
_queue_lock = threading.Lock()


def get_queue() -> JobQueue:
    """The process-wide queue: RQ when REDIS_URL is set, else in-process. It follows the
    environment: when the settings change, later jobs go to a new queue (the old one
    finishes what it has; callers keep polling the queue they submitted to)."""
    global _queue
    settings = HostedSettings.from_env()
    with _queue_lock:
        if _queue is None or _queue.settings != settings:
            old = _queue
            _queue = RedisQueue(settings) if settings.redis_url else LocalQueue(settings)
            if old is not None:
                old.retire()
        return _queue


def reset_queue() -> None:
    """Forget the singleton (tests; after changing the environment)."""
    global _queue
    with _queue_lock:
        if _queue is not None:
            _queue.close()
        _queue = None


# --------------------------------------------------------------------------- the worker CLI


def register_cli(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``python -m dgncore worker``: run jobs from the Redis queue (one at a time)."""
    p.description = "Run generation jobs from the Redis queue (REDIS_URL); one worker per device."
    p.add_argument("--redis", help="Redis URL (default: $REDIS_URL)")
    p.add_argument("--queue", help="queue name (default: $DGN_QUEUE_NAME or dgn)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: $DGN_DEVICE or auto)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--name", help="worker name (default: host and pid)")
    return _cmd_worker


def _cmd_worker(args: argparse.Namespace) -> int:
    import os

    if args.redis:
        os.environ["REDIS_URL"] = args.redis
    if args.queue:
        os.environ["DGN_QUEUE_NAME"] = args.queue
    if args.device:
        os.environ["DGN_DEVICE"] = args.device
    settings = HostedSettings.from_env()
    if not settings.redis_url:
        raise InputError("worker needs a Redis server: set REDIS_URL or pass --redis redis://HOST:6379/0")
    from .classifiers import pick_device

    pick_device(settings.device)  # a bad device is an error now, not at the first job
    if args.threads is not None:
        if not 1 <= args.threads <= 512:
            raise InputError("--threads must be between 1 and 512")
        import torch

        torch.set_num_threads(args.threads)
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import Queue, SimpleWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    conn = Redis.from_url(settings.redis_url)
    try:
        conn.ping()
    except RedisConnectionError as e:
        raise InputError(f"cannot reach Redis at {settings.redis_url[:80]}: {_one_line(e)}") from e
    queue = Queue(settings.queue_name, connection=conn, serializer=_serializer())
    # SimpleWorker runs jobs in this process: the classifier stays loaded between jobs,
    # and CUDA works (a forked work horse cannot reuse a CUDA context).
    worker = SimpleWorker([queue], connection=conn, serializer=_serializer(), name=args.name)
    worker.work(burst=args.burst, with_scheduler=False)
    return 0
