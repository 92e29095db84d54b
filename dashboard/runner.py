"""The one door through which the dashboard makes images.

Every page asks for images through :func:`run_generation` (directly, or in a background
thread through :class:`BackgroundRun`, which only calls :func:`run_generation`). It sends
each seed as a job to the process-wide job queue (:func:`dgncore.serving.worker.get_queue`: an
in-process FIFO with one worker per device, or RQ workers when ``REDIS_URL`` is set),
follows its place in the queue and its progress, and cancels it on Stop. The job calls
:func:`dgncore.runs.generate` with its output folder under the results root, so that a
result made here is the same PNG + JSON as the CLI's, is reused when asked for again,
and is still on disk after a reload, a restart, or a closed tab.

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

import hashlib
import os
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from dashboard import eta
from dashboard.records import attach_files
from dgncore.cancel import Cancel, cancel_fn
from dgncore.errors import InputError

DEFAULT_MODEL = "efficientnet_lite0"
#: how often a waiting run asks the queue for news
QUEUE_POLL_S = 0.1
#: frames are kept in memory during a run (float32, one per 10 steps): above this, no GIF
FRAMES_BUDGET_BYTES = 256 * 1024**2

ProgressFn = Callable[["RunProgress"], None]


def results_root() -> Path:
    """Where results live (read from the environment on every call)."""
    raw = os.environ.get("DGN_RESULTS") or os.environ.get("DGN_RESULTS_DIR") or "results"
    return Path(raw).expanduser()


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


def build_preset(method: str, steps: int | None = None, size: int | None = None, width: float | None = None, overrides: dict[str, Any] | None = None):
    """The preset of a request, with the checks a person can fail (missing decoder, limits)."""
    from dgncore.drawing.registry import make_preset
    from dgncore.limits import settings

    limits = settings()
    if steps is not None and not 1 <= int(steps) <= limits.max_steps:
        raise InputError(f"steps must be between 1 and {limits.max_steps}, got {steps}")
    if size is not None and not 16 <= int(size) <= limits.max_size:
        raise InputError(f"image size must be between 16 and {limits.max_size} pixels, got {size}")
    preset = make_preset(method, steps=steps, size=size, width=width, **(overrides or {}))
    if preset.method == "pretrained":
        ckpt = Path(preset.checkpoint or "")
        if not ckpt.is_file():
            raise InputError(
                f"the pretrained method needs the decoder checkpoint {ckpt.name or 'decoder.safetensors'}, "
                "which is not on disk yet (train it with: python -m dgncore pretrain); choose untrained or pixel meanwhile"
            )
    return preset


def load(model_spec: str, weights: str | None = None):
    from dgncore.limits import settings
    from dgncore.models.classifiers import load_classifier

    limits = settings()
    limits.check_model(model_spec, weights)
    return load_classifier(model_spec, weights=weights, device=limits.device, allow_torchscript=limits.allow_torchscript)


@dataclass
class RunProgress:
    """What :func:`run_generation` reports: the running job's status (step, total, history,
    and its latest preview PNGs, fetched only when the job made new ones), and which seed
    of how many."""

    progress: Any  # dgncore.serving.status.JobStatus
    seed: int
    index: int  # 0-based position of this seed in the request
    count: int  # number of seeds in the request


def run_generation(
    model_spec: str,
    target_texts: Sequence[str],
    method: str,
    steps: int | None = None,
    seed: int | Sequence[int] = 0,
    size: int | None = None,
    *,
    width: float | None = None,
    weights: str | None = None,
    model_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
    cancel: Cancel = None,
    keep_frames: bool = True,
    reuse: bool = True,
    session_id: str | None = None,
    on_queued: Callable[[int | None], None] | None = None,
) -> list[dict[str, Any]]:
    """Make (or reuse from disk) the images of ``target_texts`` for each seed.

    Returns the records seed by seed, targets in order within a seed. Each record is the
    saved JSON plus ``_file`` (absolute path of its PNG) and, when frames were kept,
    ``_gif`` (the optimisation as an animated GIF beside the PNG). User mistakes raise
    :class:`InputError`. Each seed is one job in the queue, submitted for
    ``session_id`` (default: the current Streamlit session); ``on_queued`` gets the
    job's place in the queue while it waits (1 = next), then None."""
    from dgncore.limits import settings
    from dgncore.runs import parse_targets
    from dgncore.serving.specs import JobSpec
    from dgncore.serving.worker import get_queue

    seeds = [int(seed)] if isinstance(seed, int) else [int(s) for s in seed]
    if not seeds:
        raise InputError("give at least one seed")
    texts = [t for t in (str(x).strip() for x in target_texts) if t]
    if not texts:
        raise InputError("nothing to generate: give at least one target")
    limits = settings()
    preset = build_preset(method, steps, size, width, overrides)
    clf = load(model_spec, weights)
    targets = parse_targets(texts, clf)
    name = model_name or clf.name
    side = preset.generator.out_size
    if keep_frames and len(targets) * 3 * side * side * 4 * (preset.steps // 10 + 1) > FRAMES_BUDGET_BYTES:
        keep_frames = False  # a big batch: no GIFs rather than gigabytes of frames
    is_cancelled = cancel_fn(cancel)
    queue = get_queue()
    session = session_id or current_session_id()
    root = results_root()
    specs = [JobSpec(
        tuple(t.spec for t in targets), model=model_spec, method=method, steps=steps, seed=s, size=size, width=width,
        out_dir=out_dir_for(name, preset, s, root=Path(".")).as_posix(), weights=weights, reuse=reuse,
        overrides=dict(overrides or {}), model_name=name, gif=keep_frames,
    ) for s in seeds]
    for spec in specs:  # the job's own checks (seeds, batch, limits) before any seed waits in the queue
        spec.validate(limits)
    out: list[dict[str, Any]] = []
    for k, (s, spec) in enumerate(zip(seeds, specs)):
        if is_cancelled():
            break
        job = queue.submit(spec, session)
        st = _follow(queue, job, is_cancelled, on_progress and (lambda p, s=s, k=k: on_progress(RunProgress(p, s, k, len(seeds)))), on_queued)
        if st.started and st.finished and st.state == "done":
            eta.RATES.observe_job(st.finished - st.started)
        eta.observe_all(st.records)
        if st.state == "failed":
            error = st.error or "the job failed"
            raise RuntimeError(error) if st.error_kind == "internal" else InputError(error)
        folder = st.out_dir or (root / spec.out_dir)
        out.extend(attach_files(rec, folder) for rec in st.records)
    return out


def _follow(queue, job_id: str, is_cancelled: Callable[[], bool], on_progress: Callable[[Any], None] | None, on_queued: Callable[[int | None], None] | None):
    """Poll a job until it ends: report its place in the queue and its progress, and
    cancel it when ``is_cancelled()`` turns true. Returns its final JobStatus."""
    asked_to_cancel = False
    place_shown: Any = "none yet"
    step_shown, preview_shown, preview = -1, 0, None
    while True:
        st = queue.status(job_id, preview=False)
        if not st.final and not asked_to_cancel and is_cancelled():
            queue.cancel(job_id)
            asked_to_cancel = True
        place = st.position if st.state == "queued" else None
        if on_queued is not None and place != place_shown:
            on_queued(place)
            place_shown = place
        if on_progress is not None and st.state == "running" and st.step != step_shown and st.total:
            if st.preview_no != preview_shown:  # new pictures: fetch their PNGs once (they are shown as they are)
                preview, preview_shown = queue.status(job_id).preview, st.preview_no
            st.preview = preview
            if st.preview:
                on_progress(st)
                step_shown = st.step
        if st.final:
            return st
        time.sleep(QUEUE_POLL_S)


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


def find_saved(model_spec: str, target_texts: Sequence[str], method: str, steps: int | None = None, seeds: Sequence[int] = (0,), size: int | None = None, *, weights: str | None = None, model_name: str | None = None) -> list[dict[str, Any]] | None:
    """The records of exactly this request if every one is on disk (none is computed),
    under the results root or among the shipped examples (marked ``example``), else None."""
    from dashboard.showcase import find_example
    from dgncore.runs import cached_result, parse_targets

    preset = build_preset(method, steps, size)
    clf = load(model_spec, weights)
    targets = parse_targets([t for t in target_texts if str(t).strip()], clf)
    name = model_name or clf.name
    out = []
    for s in seeds:
        folder = out_dir_for(name, preset, s)
        for t in targets:
            rec = cached_result(folder, t.slug, name, t, preset, int(s))
            if rec is None:
                example = find_example(name, t.spec, preset, int(s))
                if example is None:
                    return None
                out.append(example)
                continue
            rec["cached"] = True
            attach_files(rec, folder)
            out.append(rec)
    return out


def content_hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- background


@dataclass
class Request:
    """One call of :func:`run_generation`, as data (a page may queue several)."""

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


@dataclass
class BackgroundRun:
    """Requests run one after another in a thread, so that a rerun of the page (a click
    on Stop, a changed widget, a closed tab) neither stops nor loses them: the page polls
    :meth:`snapshot`. Results land on disk as each request finishes."""

    requests: list[Request]
    cancel: threading.Event = field(default_factory=threading.Event)
    records: list[list[dict[str, Any]]] = field(default_factory=list)
    error: str | None = None
    bug: str | None = None
    current: int = 0
    latest: RunProgress | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    updates: int = 0
    #: the browser session that started the run (its jobs count against its queue limit)
    session_id: str = field(default_factory=lambda: current_session_id())
    #: the current job's place in the queue while it waits (1 = next), else None
    position: int | None = None
    #: (time, step) of the current seed's first and latest progress: its measured step rate
    _first: tuple[float, int] | None = None
    _last: tuple[float, int] | None = None
    _seed_key: tuple[int, int] | None = None
    _thread: threading.Thread | None = None

    def start(self) -> "BackgroundRun":
        self._thread = threading.Thread(target=self._work, name="dgn-dashboard-run", daemon=True)
        self._thread.start()
        return self

    def _work(self) -> None:
        try:
            for i, req in enumerate(self.requests):
                if self.cancel.is_set():
                    break
                self.current = i
                self.latest = None
                recs = run_generation(
                    req.model_spec, req.target_texts, req.method, req.steps, list(req.seeds), req.size,
                    weights=req.weights, model_name=req.model_name, on_progress=self._progress, cancel=self.cancel,
                    session_id=self.session_id, on_queued=self._queued,
                )
                self.records.append(recs)
        except InputError as e:
            self.error = (str(e).splitlines() or ["bad input"])[0]
        except Exception as e:  # noqa: BLE001 - a bug: keep the page alive, show one line, log the rest
            self.bug = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            traceback.print_exc()
        finally:
            self.finished = time.time()

    def _progress(self, rp: RunProgress) -> None:
        now, key = (time.time(), rp.progress.step), (self.current, rp.index)
        if key != self._seed_key:
            self._seed_key, self._first = key, now
        self._last = now
        self.latest = rp
        self.updates += 1

    def stage(self) -> str:
        """queued, starting, running, saving or done."""
        if self.done:
            return "done"
        if self.waiting:
            return "queued"
        rp = self.latest
        if rp is None or self._seed_key != (self.current, rp.index):
            return "starting"
        p = rp.progress
        return "saving" if p.step >= p.total or (p.done and all(p.done)) else "running"

    def seconds_left(self) -> float:
        """At most how long until the whole run ends: the current seed at its measured rate
        (the estimate until two steps are seen), the seeds and requests after it estimated."""
        req = self.requests[min(self.current, len(self.requests) - 1)]
        per_seed = req.seconds() / max(1, len(req.seeds))
        rp = self.latest
        seeds_done = rp.index if rp is not None and self._seed_key == (self.current, rp.index) else 0
        now = per_seed
        if self.waiting:
            now += eta.queue_seconds(self.position or 1, per_seed)
        elif rp is not None and self._first and self._last and self._seed_key == (self.current, rp.index):
            (t0, s0), s1 = self._first, self._last[1]
            total = rp.progress.total
            if s1 > s0:
                rate = (time.time() - t0) / max(s1 - s0, 1) if s1 < total else 0.0
                now = rate * max(total - s1, 0)
            else:
                now = per_seed * max(total - s1, 0) / max(total, 1)
        later = per_seed * max(len(req.seeds) - seeds_done - 1, 0)
        later += sum(r.seconds() for r in self.requests[self.current + 1 :])
        return max(0.0, now + later)

    def _queued(self, position: int | None) -> None:
        self.position = position
        self.updates += 1

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    @property
    def waiting(self) -> bool:
        """True while the current job waits in the queue behind others."""
        return self.position is not None

    def stop(self) -> None:
        self.cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    def keys(self) -> list[tuple]:
        return [r.key() for r in self.requests]


def start_background(requests: Sequence[Request]) -> BackgroundRun:
    return BackgroundRun(list(requests)).start()


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


#: the audit jobs of this process by output folder: a reloaded page, or another tab with
#: the same settings, finds its audit still running instead of starting it again
_audits: dict[str, QueuedJob] = {}
_audits_lock = threading.Lock()


def running_audit(out_dir: str) -> QueuedJob | None:
    """The audit writing ``out_dir`` while it waits or runs, else None."""
    job = _audits.get(out_dir)
    try:
        return job if job is not None and not job.status().final else None
    except InputError:  # expired from the queue
        return None


def submit_audit(spec) -> QueuedJob:
    """Queue ``spec`` (a :class:`dgncore.serving.specs.AuditSpec`) for this session, unless an audit
    of the same folder is already waiting or running (that one is returned)."""
    from dgncore.serving.worker import get_queue

    with _audits_lock:
        job = running_audit(spec.out_dir)
        if job is None:
            queue = get_queue()
            job = _audits[spec.out_dir] = QueuedJob(queue, queue.submit(spec, current_session_id()), spec.out_dir)
    return job
