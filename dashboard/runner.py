"""The one door through which the dashboard makes images.

A page describes what it wants as :class:`Request` s; :func:`start_run` turns each seed
into a :class:`dgncore.serving.specs.JobSpec`, checked once against this server's limits,
and puts the jobs in the process-wide job queue (:func:`dgncore.serving.worker.get_queue`:
an in-process FIFO with one worker per device, or RQ workers when ``REDIS_URL`` is set).
The page follows them there (:class:`LiveRun`): no thread of the dashboard's own carries
them. Each job calls :func:`dgncore.runs.generate` with its output folder under the
results root, so that a result made here is the same PNG + JSON as the CLI's, is reused
when asked for again, and is still on disk after a reload, a restart, or a closed tab.

Results root: ``$DGN_RESULTS`` (else ``$DGN_RESULTS_DIR``, the hosting setting; else
``./results``). Layout::

    <root>/<model>/<preset>-<steps>[-<size>px]/seed<k>/<slug>.png   (+ .json, + .gif)

``-<size>px`` appears only when the image size differs from the preset's default, so
runs at two sizes never overwrite each other.

A bias audit goes through the same queue as a :class:`dgncore.serving.specs.AuditSpec`
(:func:`submit_audit`, :class:`QueuedJob`): it is no :class:`Request`, since it has no
target list and writes a report folder under ``<root>/audit/``.

This module does not import Streamlit: it can run in a worker process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dashboard import eta
from dashboard.records import attach_files
from dgncore.errors import InputError, one_line

DEFAULT_MODEL = "efficientnet_lite0"
#: how often a waiting run asks the queue for news
QUEUE_POLL_S = 0.1
#: the least time without a step before a run says it is slower than expected
SLOW_FLOOR_S = 10.0
#: frames are kept in memory during a run (float32, one per 10 steps): above this, no GIF
FRAMES_BUDGET_BYTES = 256 * 1024**2


def results_root() -> Path:
    """Where results live (read from the environment on every call)."""
    raw = os.environ.get("DGN_RESULTS") or os.environ.get("DGN_RESULTS_DIR") or "results"
    return Path(raw).expanduser()


#: the gallery's ``?open=`` values of shipped examples start with this
EXAMPLES_PREFIX = "examples/"


def gallery_key(rec: dict[str, Any]) -> str | None:
    """The gallery's ``?open=`` value for a result, so that it opens on a page of its own:
    ``examples/<path>`` for a shipped example, its JSON's path under the results root for
    one made here, None for anything else."""
    if rec.get("example"):
        return f"{EXAMPLES_PREFIX}{rec['path']}"
    try:
        return Path(rec["_file"]).with_suffix(".json").resolve().relative_to(results_root().resolve()).as_posix()
    except (KeyError, ValueError):
        return None


def safe_name(text: str, limit: int = 80) -> str:
    """A folder-name-safe version of ``text``."""
    out = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-.") or "model"
    return out[:limit]


def model_folder_name(model_name: str) -> str:
    return safe_name(model_name)


def preset_folder_name(preset) -> str:
    from dgncore.drawing.registry import get_preset

    name = f"{preset.name}-{preset.steps}"
    default = get_preset(preset.name).generator.out_size
    if preset.generator.out_size != default:
        name += f"-{preset.generator.out_size}px"
    return name


def out_dir_for(model_name: str, preset, seed: int, root: Path | None = None) -> Path:
    root = results_root() if root is None else Path(root)
    return root / model_folder_name(model_name) / preset_folder_name(preset) / f"seed{int(seed)}"


def methods() -> list[str]:
    """The methods people can pick, in dgncore's order (a method added there appears here)."""
    from dgncore.drawing.registry import METHODS

    return list(METHODS)


def method_ready(method: str) -> bool:
    """False when the method needs a checkpoint that is not on disk."""
    from dgncore.drawing.registry import get_preset

    ckpt = get_preset(method).checkpoint
    return not ckpt or Path(ckpt).is_file()


def default_method() -> str:
    """The first of dgncore's methods whose files are on disk."""
    return next((m for m in methods() if method_ready(m)), methods()[-1])


def load(model_spec: str, weights: str | None = None):
    """The classifier, loaded (once per process, by dgncore) in a thread that then ends:
    torch work on a long-lived thread, such as Streamlit's, keeps an OpenMP team of its own
    that slows every job this process runs after it (bench/README.md, "click_to_picture.py")."""
    from dgncore.limits import settings
    from dgncore.models.classifiers import load_classifier
    from dgncore.models.hardware import in_passing_thread

    limits = settings()
    limits.check_model(model_spec, weights)
    return in_passing_thread(load_classifier, model_spec, weights=weights, device=limits.device, allow_torchscript=limits.allow_torchscript)


def current_session_id() -> str:
    """The browser session (Streamlit's session id) that runs this code, if any."""
    import sys

    if "streamlit" in sys.modules:  # never import Streamlit here (worker processes)
        try:
            from streamlit.runtime.scriptrunner import get_script_run_ctx

            ctx = get_script_run_ctx(suppress_warning=True)
            if ctx is not None:
                return ctx.session_id
        except Exception:  # noqa: BLE001 - an older or newer Streamlit: one shared session
            pass
    return f"process-{os.getpid()}"


def find_saved(req: Request) -> list[dict[str, Any]] | None:
    """The records of exactly this request if every one is on disk (none is computed),
    under the results root or among the shipped examples (marked ``example``), else None."""
    from dashboard.showcase import find_example
    from dgncore.runs import cached_result, parse_targets

    clf = load(req.model_spec, req.weights)
    targets = parse_targets(list(req.target_texts), clf)
    root = results_root()
    out = []
    for spec, preset in req.job_specs():
        folder, name = root / spec.out_dir, spec.model_name or spec.model
        for t in targets:
            rec = cached_result(folder, t.slug, name, t, preset, spec.seed)
            if rec is None:
                example = find_example(name, t.spec, preset, spec.seed)
                if example is None:
                    return None
                out.append(example)
                continue
            rec["cached"] = True
            out.append(attach_files(rec, folder))
    return out


def content_hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Request:
    """What a page asks for: its targets, method and settings for one or more seeds, with
    the labels the page shows beside them. Each seed becomes one job."""

    model_spec: str
    target_texts: tuple[str, ...]
    method: str
    steps: int | None = None
    seeds: tuple[int, ...] = (0,)
    size: int | None = None
    weights: str | None = None
    model_name: str | None = None
    label: str = ""
    #: short names of the targets, for the progress view (default: the target texts)
    target_labels: tuple[str, ...] = ()

    def key(self) -> tuple:
        return (self.model_spec, self.target_texts, self.method, self.steps, self.seeds, self.size, self.weights, self.model_name)

    def seconds(self) -> float:
        """At most how long it takes here (:mod:`dashboard.eta`)."""
        return eta.request_seconds(self.model_name or self.model_spec, self.method, self.steps, self.size, len(self.target_texts), len(self.seeds))

    def job_specs(self) -> list[tuple[Any, Any]]:
        """One (JobSpec, preset) per seed, each checked against this server's limits
        (:meth:`dgncore.serving.specs.JobSpec.validate`, which also builds the preset)
        and writing to its folder under the results root. Bad input raises InputError."""
        from dgncore.limits import settings
        from dgncore.serving.specs import JobSpec

        texts = tuple(t for t in (str(x).strip() for x in self.target_texts) if t)
        if not texts:
            raise InputError("nothing to generate: give at least one target")
        if not self.seeds:
            raise InputError("give at least one seed")
        limits = settings()
        name = self.model_name or self.model_spec  # what the records say; the folder is its safe form
        out = []
        for seed in self.seeds:
            spec = JobSpec(texts, model=self.model_spec, method=self.method, steps=self.steps, seed=seed, size=self.size,
                           weights=self.weights, model_name=self.model_name)
            preset = spec.validate(limits)
            side = preset.generator.out_size
            frames = len(texts) * 3 * side * side * 4 * (preset.steps // 10 + 1)  # a big batch: no GIFs rather than gigabytes of frames
            out.append((dataclasses.replace(spec, out_dir=out_dir_for(name, preset, seed, root=Path(".")).as_posix(),
                                            gif=frames <= FRAMES_BUDGET_BYTES), preset))
        return out


@dataclass
class SeedJob:
    """One seed of one request, and its job once it is in the queue."""

    request: int
    spec: Any  # dgncore.serving.specs.JobSpec
    job_id: str | None = None
    #: the job's latest JobStatus (without preview images)
    status: Any = None

    @property
    def final(self) -> bool:
        return self.status is not None and self.status.final


@dataclass
class LiveRun:
    """A page's requests as jobs in the queue, followed there directly: nothing of the
    page runs them, so a rerun, a page switch or a closed tab neither stops nor loses
    them. Whoever shows the run calls :meth:`poll` (the live view, once a second), which
    reads the jobs' states, puts the next seeds in the queue as this session's share of
    it allows, and fetches a running job's preview PNGs only when it has made new ones."""

    requests: list[Request]
    jobs: list[SeedJob]
    queue: Any
    session_id: str
    finished: float | None = None
    stopped: bool = False
    #: one line for a person: why the run ended without all its pictures
    error: str | None = None
    #: one line when a job broke inside (the server log has the rest)
    bug: str | None = None
    #: why the queue cannot be asked right now (its server is away), else None
    unavailable: str | None = None
    #: True while the current job waits and no worker takes jobs from the queue
    no_worker: bool = False
    #: the running job's latest preview PNGs, one per target
    preview: list[bytes] | None = None
    _preview_of: tuple[int, int] = (-1, 0)
    #: (time, step) of the running job's first and latest progress seen: its measured step rate
    _first: tuple[float, int] | None = None
    _last: tuple[float, int] | None = None
    _rate_of: int = -1
    #: (job, state, step) last seen, and when it last changed: a run that does not move says so
    _seen: tuple[int, str, int] | None = None
    _moved: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ following

    def poll(self) -> LiveRun:
        from dgncore.serving.status import QueueUnavailable

        with self._lock:
            if self.finished is None:
                try:
                    self._poll()
                    self.unavailable = None
                except QueueUnavailable as e:  # its jobs are kept there: say so and keep asking
                    self.unavailable = str(e)
        return self

    def _poll(self) -> None:
        for job in self.jobs:
            if job.job_id is None or job.final:
                continue
            try:
                job.status = self.queue.status(job.job_id, preview=False)
            except InputError:  # expired from the queue or the queue lost it
                self._fail(input_error="the queue no longer knows a job of this run (was the server restarted?): Try again sends it anew")
                return
            if job.final:
                self._ended(job)
                if self.finished is not None:
                    return
        if self.stopped:
            self._cancel_rest()
        else:
            self._submit_what_fits()
        current = self.current()
        self.no_worker = current is not None and current.status is not None and current.status.state == "queued" and self.queue.workers() == 0
        if current is not None and current.status is not None:
            seen = (self.jobs.index(current), current.status.state, current.status.step)
            if seen != self._seen:
                self._seen, self._moved = seen, time.time()
            if current.status.state == "running":
                self._follow(current)
        if all(j.final or (j.job_id is None and self.stopped) for j in self.jobs):
            self.finished = time.time()

    def _submit_what_fits(self) -> None:
        waiting = [j for j in self.jobs if j.job_id is None]
        if not waiting:
            return
        room = self.queue.settings.max_queued_per_session - len(self.queue.session_jobs(self.session_id))
        for job in waiting[: max(room, 0)]:
            try:
                job.job_id = self.queue.submit(job.spec, self.session_id)
            except InputError as e:
                self._fail(input_error=one_line(e))
                return
            job.status = self.queue.status(job.job_id, preview=False)

    def _follow(self, job: SeedJob) -> None:
        i, st = self.jobs.index(job), job.status
        if st.preview_no and (i, st.preview_no) != self._preview_of:
            self.preview, self._preview_of = self.queue.status(job.job_id).preview, (i, st.preview_no)
        if st.total and st.step:
            now = (time.time(), st.step)
            if self._rate_of != i:
                self._rate_of, self._first = i, now
            self._last = now

    def _ended(self, job: SeedJob) -> None:
        st = job.status
        if st.state == "done" and st.started and st.finished:
            eta.RATES.observe_job(st.finished - st.started, sum(float(r.get("seconds") or 0.0) for r in st.records if not r.get("cached")))
        eta.observe_all(st.records)
        if st.state == "failed":
            error = st.error or "the job failed"
            if st.error_kind == "internal":
                self._fail(bug=error)
            else:
                self._fail(input_error=error)

    def _fail(self, input_error: str | None = None, bug: str | None = None) -> None:
        self.error, self.bug = input_error, bug
        self._cancel_rest()
        self.finished = time.time()

    def can_stop(self) -> bool:
        """Whether this session may stop the run: its own jobs, or any on a server of one's own."""
        return not self.queue.settings.hosted or all(j.status is None or j.status.session_id == self.session_id for j in self.jobs)

    def _cancel_rest(self) -> None:
        owner = self.session_id if self.queue.settings.hosted else None
        for job in self.jobs:
            if job.job_id is not None and not job.final:
                try:
                    self.queue.cancel(job.job_id, session_id=owner)
                    job.status = self.queue.status(job.job_id, preview=False)
                except InputError:  # already gone
                    pass

    def stop(self) -> None:
        """Cancel the jobs still waiting or running (what a running one has made is kept) and
        send no more."""
        from dgncore.serving.status import QueueUnavailable

        with self._lock:
            self.stopped = True
            try:
                self._cancel_rest()
            except QueueUnavailable as e:  # the flag is set: the next poll that reaches the queue cancels
                self.unavailable = str(e)

    def wait(self, timeout: float | None = None) -> bool:
        """Poll until the run has ended (or ``timeout`` seconds passed); True if it ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll().done and (deadline is None or time.monotonic() < deadline):
            time.sleep(QUEUE_POLL_S)
        return self.done

    # ------------------------------------------------------------------ what the page shows

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def cancelled(self) -> bool:
        return self.stopped

    def current(self) -> SeedJob | None:
        """The first job that has not ended (the one running or next)."""
        return next((j for j in self.jobs if not j.final), None)

    @property
    def position(self) -> int | None:
        """The current job's place in the queue while it waits (1 = next), else None."""
        job = self.current()
        st = job.status if job is not None else None
        return st.position if st is not None and st.state == "queued" else None

    @property
    def waiting(self) -> bool:
        return self.position is not None

    def stage(self) -> str:
        """queued, starting, running, saving or done."""
        if self.done:
            return "done"
        job = self.current()
        st = job.status if job is not None else None
        if st is None or st.state == "queued":
            return "queued"
        if not st.total or self._preview_of[0] != self.jobs.index(job):
            return "starting"
        return "saving" if st.step >= st.total or (st.done and all(st.done)) else "running"

    def seconds_left(self) -> float:
        """At most how long until the whole run ends: the current job at its measured rate
        (the estimate until two steps are seen), the jobs after it estimated."""
        job = self.current()
        if job is None:
            return 0.0
        i = self.jobs.index(job)
        per_job = [self.requests[j.request].seconds() / max(1, len(self.requests[j.request].seeds)) for j in self.jobs]
        st = job.status
        now = per_job[i]
        if st is not None and st.state == "queued":
            now += eta.queue_seconds(st.position or 1, per_job[i])
        elif st is not None and st.total and self._rate_of == i and self._first and self._last:
            (t0, s0), s1 = self._first, self._last[1]
            if s1 > s0:
                now = (time.time() - t0) / (s1 - s0) * max(st.total - s1, 0) if s1 < st.total else 0.0
            else:
                now = per_job[i] * max(st.total - s1, 0) / st.total
        return max(0.0, now + sum(per_job[i + 1:]))

    def slower_than_expected(self) -> bool:
        """True when the running job has made no step for twice as long as this server's
        figures expect (its start: the job's own cost; then one step), and at least 10 s."""
        job = self.current()
        st = job.status if job is not None else None
        if st is None or st.state != "running":
            return False
        req = self.requests[job.request]
        model = req.model_name or req.model_spec
        expected = eta.step_seconds(model, req.method, req.size, len(req.target_texts)) if st.step else eta.RATES.job_overhead()
        return time.time() - self._moved > max(SLOW_FLOOR_S, 2 * expected)

    def fraction(self) -> float:
        """How much of the run is done, 0..1 (each job an equal share)."""
        if self.done:
            return 1.0
        ended = sum(j.final for j in self.jobs)
        job = self.current()
        st = job.status if job is not None else None
        part = st.step / st.total if st is not None and st.state == "running" and st.total else 0.0
        return min(max((ended + part) / max(len(self.jobs), 1), 0.0), 1.0)

    def where(self) -> tuple[Request, int, int]:
        """(request of the current job, its seed's place in that request, the request's seed count)."""
        job = self.current() or self.jobs[-1]
        req = self.requests[job.request]
        return req, req.seeds.index(job.spec.seed), len(req.seeds)

    @property
    def records(self) -> list[list[dict[str, Any]]]:
        """Per request, the records its jobs saved (a stopped job's too), seed by seed."""
        root = results_root()
        out: list[list[dict[str, Any]]] = [[] for _ in self.requests]
        for job in self.jobs:
            st = job.status
            if st is not None and st.final and st.records:
                folder = st.out_dir or (root / job.spec.out_dir)
                out[job.request].extend(attach_files(rec, folder) for rec in st.records)
        return out

    def keys(self) -> list[tuple]:
        return [r.key() for r in self.requests]


def running_run(requests: Sequence[Request], session_id: str | None = None) -> LiveRun | None:
    """The run of exactly ``requests`` while one of its jobs still waits or runs in the
    queue (sent before a reload, from another tab, or before the web app restarted), to be
    followed instead of sent again; else None."""
    from dgncore.serving.status import QueueUnavailable
    from dgncore.serving.worker import get_queue

    try:
        jobs = [SeedJob(i, spec) for i, req in enumerate(requests) for spec, _ in req.job_specs()]
        queue = get_queue()
        for job in jobs:
            job.job_id = queue.find(job.spec)
    except (InputError, QueueUnavailable):  # the page says what is wrong with the request, or that the queue is away
        return None
    if not any(j.job_id for j in jobs):
        return None
    return LiveRun(list(requests), jobs, queue, session_id or current_session_id()).poll()


def start_run(requests: Sequence[Request], session_id: str | None = None) -> LiveRun:
    """Check every request, then put its jobs in the queue for ``session_id`` (default:
    the current Streamlit session), as many as the session may have waiting; the rest
    follow as those end (:meth:`LiveRun.poll`). Bad input raises InputError, and a queue
    that does not answer QueueUnavailable, before any job waits."""
    from dgncore.serving.status import QueueUnavailable
    from dgncore.serving.worker import get_queue

    requests = list(requests)
    jobs = [SeedJob(i, spec) for i, req in enumerate(requests) for spec, _ in req.job_specs()]
    run = LiveRun(requests, jobs, get_queue(), session_id or current_session_id()).poll()
    if run.unavailable and not any(j.job_id for j in jobs):  # a queue that does not answer says so now, not in the live view
        raise QueueUnavailable(run.unavailable)
    if run.error:
        raise InputError(run.error)
    return run


# --------------------------------------------------------------------------- audit jobs


@dataclass
class QueuedJob:
    """A job the page follows directly in the queue. Audits come this way: an audit is not
    a :class:`Request` (no target list; its result is a report folder, not records), so
    it is a :class:`dgncore.serving.specs.AuditSpec` that waits its turn in the same queue as the
    generation jobs, and no page thread has to carry it."""

    queue: Any
    job_id: str
    #: the output folder, relative to the results root
    out_dir: str

    def status(self):
        """The job's :class:`dgncore.serving.status.JobStatus` (without preview images)."""
        return self.queue.status(self.job_id, preview=False)

    def stop(self) -> None:
        from dgncore.limits import settings

        # hosted: only the session that sent it may stop it; locally a reloaded tab may too
        self.queue.cancel(self.job_id, session_id=current_session_id() if settings().hosted else None)


#: two tabs that press Run at once send one audit
_submit_lock = threading.Lock()


def running_audit(spec) -> QueuedJob | None:
    """The audit of ``spec`` (a :class:`dgncore.serving.specs.AuditSpec`) while it waits or
    runs in the queue (sent before a reload, from another tab, or before the web app
    restarted), else None. A queue that does not answer raises QueueUnavailable."""
    from dgncore.serving.worker import get_queue

    queue = get_queue()
    job_id = queue.find(spec)
    return None if job_id is None else QueuedJob(queue, job_id, spec.out_dir)


def submit_audit(spec) -> QueuedJob:
    """Queue ``spec`` for this session, unless the same audit already waits or runs (that one is returned)."""
    from dgncore.serving.worker import get_queue

    with _submit_lock:
        job = running_audit(spec)
        if job is None:
            queue = get_queue()
            job = QueuedJob(queue, queue.submit(spec, current_session_id()), spec.out_dir)
    return job
