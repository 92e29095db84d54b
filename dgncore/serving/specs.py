"""What a job asks for (:class:`JobSpec`, :class:`AuditSpec`), checked once against the server's limits before it waits in a queue."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping

from dgncore.drawing.registry import DEFAULT_METHOD
from dgncore.errors import InputError
from dgncore.limits import Limits

MAX_TARGET_CHARS = 500

#: preset settings a job may change, with their types
OVERRIDES: dict[str, type] = {"lr": float, "penalty": float, "reg_weight": float, "noise_sigma": float, "early_stop": float, "final": str}

_SAFE_PART = re.compile(r"^[\w][\w.+\- ]{0,79}$")


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

    def resolve_out_dir(self, settings: Limits) -> Path:
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

    def validate(self, settings: Limits):
        """Check every field against the server's limits (no model is loaded); return the
        preset the job will run with. Bad values are one-line InputErrors."""
        from dgncore.drawing.presets import MAX_BATCH, MAX_SEED
        from dgncore.drawing.registry import PRESETS, make_preset

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
        preset = make_preset(self.method, steps=self.steps, size=self.size, width=self.width, **overrides)
        if preset.steps > settings.max_steps:
            raise InputError(f"{preset.name} runs {preset.steps} steps; this server allows {settings.max_steps}: ask for fewer steps")
        if preset.generator.out_size > settings.max_size:
            raise InputError(f"{preset.name} makes {preset.generator.out_size}px images; this server allows {settings.max_size}px: ask for a smaller size")
        if preset.checkpoint and not Path(preset.checkpoint).is_file():
            raise InputError(f"the {preset.name} method needs the decoder file {Path(preset.checkpoint).name}, which is not on disk "
                             "(train it with: python -m dgncore pretrain); choose another method meanwhile")
        return preset

    def summary(self) -> dict[str, Any]:
        """What the job log and RQ's job description say about the job."""
        return {"kind": "generate", "model": self.model_name or self.model, "method": self.method, "steps": self.steps, "targets": len(self.targets)}


@dataclass(frozen=True)
class AuditSpec(_Spec):
    """One bias audit (:func:`dgncore.audit.run.run_audit`, or :func:`~dgncore.audit.builtin.audit_builtin`
    for a built-in planted-shortcut model) as a job.

    An audit is not a :class:`JobSpec`: it has no target list, it makes many batches
    (methods x seeds) and its output is a report folder rather than one record per
    target. It still goes through the same FIFO as the generation jobs, so that it
    takes its turn on the device instead of competing with them for it, keeps running
    when its browser tab is closed, counts against the session's limit, obeys the
    server's step limit and time limit, and is cancelled the same way. Progress comes
    as ``stage`` (e.g. ``untrained seed 1: step 40/200``), ``step`` and ``total`` (of the
    current phase: method x seed batches while generating), ``phase``, ``phase_no`` of ``phases`` and ``left_s``
    (:class:`dgncore.audit.pipeline.AuditProgress`)."""

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
    #: train (or reuse) a decoder on the dataset's images for the pretrained method (:mod:`dgncore.prior.dataset`)
    train_prior: bool = False
    prior_steps: int | None = None
    #: rank the classes by confirmation by intervention (:mod:`dgncore.audit.intervention`; needs a dataset or a built-in model)
    intervene: bool = False
    kind: str = "audit"

    def __post_init__(self) -> None:
        for name in ("classes", "methods", "seeds"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def validate(self, settings: Limits) -> None:
        """Check every field against the server's limits (nothing is loaded)."""
        from dgncore.audit.methods import parse_methods, parse_seeds
        from dgncore.audit.planted import is_builtin
        from dgncore.drawing.presets import MAX_SEED
        from dgncore.drawing.registry import get_preset

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


def _check_model(model: Any, weights: Any, model_name: Any, device: Any, settings: Limits) -> None:
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


def _check_out_dir(out_dir: Any, settings: Limits) -> None:
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


def check_session(session_id: Any) -> str:
    if not isinstance(session_id, str) or not 0 < len(session_id) <= 200:
        raise InputError("a session id must be 1-200 characters")
    return session_id
