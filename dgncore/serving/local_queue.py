"""The app's own queue: one FIFO and one worker thread per device, each running its jobs in a child process
(:mod:`dgncore.serving.job_process`); a job outlives the browser session that sent it."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from dgncore.errors import InputError, one_line
from dgncore.limits import Limits
from dgncore.serving.execute import execute, log_job
from dgncore.serving.job_process import JobLost, JobProcess
from dgncore.serving.specs import AuditSpec, JobSpec, check_session
from dgncore.serving.status import JobQueue, JobState, JobStatus

log = logging.getLogger(__name__)

#: finished jobs whose status a LocalQueue keeps
KEEP_FINISHED = 2000


@dataclass
class _LocalJob:
    spec: JobSpec | AuditSpec
    session_id: str
    device: str
    status: JobStatus
    cancel: threading.Event = field(default_factory=threading.Event)


class LocalQueue(JobQueue):
    """One FIFO per device, one worker thread per device (started on first use)."""

    def __init__(self, settings: Limits | None = None) -> None:
        self.settings = settings or Limits.from_env()
        self._cond = threading.Condition()
        self._jobs: collections.OrderedDict[str, _LocalJob] = collections.OrderedDict()
        self._pending: dict[str, collections.deque[str]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closed = False
        self._retired = False

    def _device_key(self, spec: JobSpec | AuditSpec) -> str:
        from dgncore.models.classifiers import pick_device

        return str(pick_device(spec.device if spec.device != "auto" else self.settings.device))

    def submit(self, spec: JobSpec | AuditSpec, session_id: str) -> str:
        check_session(session_id)
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

    def find(self, spec: JobSpec | AuditSpec) -> str | None:
        with self._cond:
            return next((i for i, j in reversed(self._jobs.items()) if j.spec == spec and not j.status.final), None)

    def status(self, job_id: str, preview: bool = True) -> JobStatus:
        with self._cond:
            job = self._jobs.get(job_id) if isinstance(job_id, str) else None
            if job is None:
                raise InputError("no such job (it may have expired)")
            st = dataclasses.replace(job.status, records=list(job.status.records), preview=job.status.preview if preview else None)
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
        process = JobProcess(self.settings) if self.settings.job_process else None
        if process is None and self.settings.threads:
            import torch

            torch.set_num_threads(self.settings.threads)
        try:
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
                self._run(job, process)
        finally:
            if process is not None:
                process.stop()

    def _run(self, job: _LocalJob, process: JobProcess | None) -> None:
        st = job.status

        def report(info: dict[str, Any]) -> None:
            with self._cond:
                st.step, st.total, st.probs, st.stage = info["step"], info["total"], info.get("probs", []), info.get("stage", "")
                st.phase, st.phase_no, st.phases, st.left_s = info.get("phase", ""), info.get("phase_no", 0), info.get("phases", 0), info.get("left_s")
                st.activation, st.checks, st.done = info.get("activation", []), info.get("checks", []), info.get("done", [])
                if "preview" in info:
                    st.preview, st.preview_no = info["preview"], st.preview_no + 1

        try:
            if process is not None:
                result = process.execute(job.spec, report, job.cancel.is_set)
            else:
                result = execute(job.spec, self.settings, report, job.cancel.is_set)
            state: JobState = "cancelled" if result["cancelled"] else "done"
            error, kind = result.get("error"), None
            records = result["records"]
        except JobLost as e:
            state, error, kind, records = "failed", str(e), "lost", []
        except InputError as e:
            state, error, kind, records = "failed", one_line(e), "input", []
        except Exception as e:  # noqa: BLE001 - a bug must not kill the worker thread
            log.error("job %s failed:\n%s", st.job_id, traceback.format_exc())
            state, error, kind, records = "failed", f"internal error: {type(e).__name__}: {one_line(e)}", "internal", []
        with self._cond:
            st.state, st.error, st.error_kind, st.records, st.finished = state, error, kind, records, time.time()
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
