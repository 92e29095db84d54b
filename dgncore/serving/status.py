"""What a job has done so far (:class:`JobStatus`), and the interface every queue offers (:class:`JobQueue`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dgncore.limits import Limits

if TYPE_CHECKING:
    from dgncore.serving.specs import AuditSpec, JobSpec

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ErrorKind = Literal["input", "internal", "lost"]

FINAL_STATES = ("done", "failed", "cancelled")

#: steps of activation history a status carries
MAX_HISTORY = 2000


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
    #: how many previews the job has made: a poller fetches the images only when it grows
    preview_no: int = 0
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
    #: one line for a person: why the job failed, or what stopped it early
    error: str | None = None
    #: what kind of failure: "input" (a request the person can change), "internal" (a bug
    #: or a broken worker; the log has the rest) or "lost" (its worker went away: the same
    #: request sent again runs); None when the job did not fail
    error_kind: ErrorKind | None = None
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

    def files(self) -> list[Path]:
        """The PNG and JSON of every saved result."""
        if self.out_dir is None:
            return []
        out = []
        for r in self.records:
            png = self.out_dir / r["png"]
            out += [png, png.with_suffix(".json")]
        return out


class QueueUnavailable(RuntimeError):
    """The queue's server (Redis) does not answer. Nothing the visitor did: their jobs are
    kept there and go on once it is back, so a page says so and keeps waiting."""


class JobQueue:
    """What the dashboard sees: submit, poll, cancel, and find a job still in the queue."""

    settings: Limits

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

    def workers(self) -> int | None:
        """How many workers take jobs from this queue now (None: the queue runs its own)."""
        return None

    def find(self, spec: JobSpec | AuditSpec) -> str | None:  # pragma: no cover - interface
        """The id of a queued or running job of exactly ``spec`` (any session's), else None:
        a reloaded page, another tab or a restarted web app follows it instead of sending it again."""
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


