"""The same jobs through RQ on a Redis server, run by ``python -m dgncore worker`` processes that share the results folder."""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

from dgncore.errors import InputError, one_line
from dgncore.limits import Limits
from dgncore.serving.execute import execute, log_job
from dgncore.serving.specs import AuditSpec, JobSpec, check_session, spec_from_dict
from dgncore.serving.status import JobQueue, JobState, JobStatus, QueueUnavailable

CANCEL_KEY = "dgn:cancel:{}"

PREVIEW_KEY = "dgn:preview:{}"

SESSION_KEY = "dgn:session:{}"

#: the job of a spec while it waits or runs (by a hash of the spec), for :meth:`RedisQueue.find`
SPEC_KEY = "dgn:spec:{}"

#: set by the worker while it runs a job, for ALIVE_TTL_S, renewed every ALIVE_EVERY_S: a
#: job whose worker was killed loses it within seconds (RQ itself notices only after its
#: worker TTL, minutes later), and the page says so instead of waiting
ALIVE_KEY = "dgn:alive:{}"
ALIVE_EVERY_S = 2.0
ALIVE_TTL_S = 10

#: what a visitor reads when the worker of their job went away
WORKER_LOST = "the worker running this picture stopped before it finished; what it had made is kept, and Try again sends it to another"

CANCEL_POLL_S = 0.25

#: what RQ stores in Redis for a worker to import: the path that has always named
#: :func:`execute_rq` (``dgncore/jobs.py`` hands it on), so that a web app and a worker
#: of different versions still agree
RQ_FUNCTION = "dgncore.jobs.execute_rq"


def rq_serializer():
    from rq.serializers import JSONSerializer

    return JSONSerializer


def spec_key(spec: JobSpec | AuditSpec) -> str:
    import hashlib
    import json

    return SPEC_KEY.format(hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:32])


def _answering(method):
    """Redis not answering becomes :class:`QueueUnavailable`, in words a visitor can read."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return method(self, *args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as e:
            raise QueueUnavailable("the job queue (Redis) is not answering; jobs already in it are kept and go on once it is back") from e

    return wrapper


class RedisQueue(JobQueue):
    """The same interface on RQ; jobs run in ``python -m dgncore worker`` processes."""

    def __init__(self, settings: Limits | None = None, connection=None) -> None:
        from redis import Redis
        from rq import Queue

        self.settings = settings or Limits.from_env()
        if connection is None and not self.settings.redis_url:
            raise InputError("RedisQueue needs REDIS_URL")
        self.redis = connection or Redis.from_url(self.settings.redis_url)
        self.queue = Queue(self.settings.queue_name, connection=self.redis, serializer=rq_serializer())

    def _fetch(self, job_id: str):
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        if not isinstance(job_id, str) or not re.fullmatch(r"[0-9a-f]{32}", job_id):
            raise InputError("no such job (it may have expired)")
        try:
            return Job.fetch(job_id, connection=self.redis, serializer=rq_serializer())
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

    @_answering
    def session_jobs(self, session_id: str) -> list[str]:
        return self._active(check_session(session_id))

    @_answering
    def submit(self, spec: JobSpec | AuditSpec, session_id: str) -> str:
        check_session(session_id)
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
                RQ_FUNCTION, spec.to_dict(),
                job_id=job_id, job_timeout=timeout, result_ttl=7 * 24 * 3600, failure_ttl=7 * 24 * 3600,
                meta={"session": session_id, "submitted": time.time()},
                description="dgn " + " ".join(f"{k}={v}" for k, v in spec.summary().items()),
            )
            key = SESSION_KEY.format(session_id)
            self.redis.sadd(key, job_id)
            self.redis.expire(key, 7 * 24 * 3600)
            self.redis.set(spec_key(spec), job_id, ex=7 * 24 * 3600)
        return job_id

    @_answering
    def workers(self) -> int | None:
        from rq import Worker

        return Worker.count(connection=self.redis, queue=self.queue)

    @_answering
    def find(self, spec: JobSpec | AuditSpec) -> str | None:
        raw = self.redis.get(spec_key(spec))
        job_id = raw.decode() if isinstance(raw, bytes) else raw
        if not job_id:
            return None
        try:
            return None if self.status(job_id, preview=False).final else job_id
        except InputError:  # expired
            return None

    @_answering
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
            left_s=meta.get("left_s"), out_dir=out_dir, session_id=meta.get("session"), preview_no=int(meta.get("preview_no", 0)),
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
            if meta.get("alive") and not self.redis.exists(ALIVE_KEY.format(job_id)) and time.time() - float(meta.get("started") or 0) > ALIVE_TTL_S:
                st.state, st.error_kind, st.error = "failed", "lost", WORKER_LOST
        elif rq_state == "finished":
            result = job.return_value() or {}
            st.records = list(result.get("records", []))
            st.error = result.get("error")
            if result.get("input_error"):
                st.state, st.error_kind = "failed", "input"
            else:
                st.state = "cancelled" if result.get("cancelled") else "done"
        elif rq_state == "failed":
            st.state, st.error_kind = "failed", "internal"
            res = job.latest_result()
            exc = (getattr(res, "exc_string", None) or job.exc_info or "").strip()
            st.error = "internal error: " + (exc.splitlines()[-1][:300] if exc else "the worker failed")
        else:  # canceled, stopped
            st.state = "cancelled"
        return st

    @_answering
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
    settings = Limits.from_env()
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
            job.meta["preview_no"] = int(job.meta.get("preview_no", 0)) + 1
        job.save_meta()

    alive, beating = ALIVE_KEY.format(job.id), threading.Event()

    def heartbeat() -> None:  # Redis calls only: no torch on this thread
        while not beating.wait(ALIVE_EVERY_S):
            try:
                job.connection.set(alive, 1, ex=ALIVE_TTL_S)
            except Exception:  # noqa: BLE001 - Redis away for a moment: the job itself decides what that means
                pass

    job.connection.set(alive, 1, ex=ALIVE_TTL_S)
    job.meta.update({"started": time.time(), "alive": True})
    job.save_meta()
    threading.Thread(target=heartbeat, name="dgn-alive", daemon=True).start()
    spec = None
    try:
        spec = spec_from_dict(spec_dict)
        result = execute(spec, settings, report, cancel)
    except InputError as e:
        result = {"records": [], "cancelled": False, "error": one_line(e), "input_error": True}
    finally:
        beating.set()
        job.meta["finished"] = time.time()
        job.save_meta()
        job.connection.delete(alive)
    if spec is not None:
        state: JobState = "failed" if result.get("input_error") else ("cancelled" if result["cancelled"] else "done")
        log_job(settings, spec, JobStatus(
            job.id, state, submitted=job.meta.get("submitted"), started=job.meta["started"], finished=job.meta["finished"],
            records=result["records"], error=result.get("error"),
        ))
    return result
