"""Time in seconds, before and during a run, from step rates measured on this server.

Every finished image's record says how long its steps took (``seconds`` over ``steps``);
:data:`RATES` keeps the recent ones per (model, method, image size) and turns them into
"up to about 40 s" before a run and "about 12 s left" during one. Until this server has
measured a method, the rates of the shipped examples stand in (they were measured on
the machine that made them), then a cautious default. Queued jobs are estimated from
the recent jobs' durations. No Streamlit here: the runner's thread feeds it.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from typing import Any, Iterable

#: seconds per step of one target before anything is measured (EfficientNet-Lite0,
#: 224 px, one busy CPU core: the slowest methods measured here take about this)
DEFAULT_SECONDS_PER_STEP = 0.45
#: seconds a job spends outside its steps (loading the models, saving, scoring the saved
#: file again, the second opinion) before this server has measured it: a first job here
#: loaded both networks in about this
DEFAULT_JOB_OVERHEAD_S = 5.0
#: observations kept per key (the median of these is used)
KEEP = 20
#: runs shorter than this say little about a step's cost
MIN_STEPS = 10


class StepRates:
    """Seconds per step of one target, per (model, method, size), from finished records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[tuple[str, str, int], deque[float]] = {}
        self._prior: dict[tuple[str, str, int], deque[float]] = {}
        self._jobs: deque[float] = deque(maxlen=KEEP)
        self._overhead: deque[float] = deque(maxlen=KEEP)
        #: (model, method) -> steps the recent runs took (a run stops once the classifier is sure)
        self._steps: dict[tuple[str, str], deque[tuple[int, int]]] = {}

    def observe(self, rec: dict[str, Any], prior: bool = False) -> None:
        """Learn from a freshly made record (``prior``: a shipped example's, used only until
        this server has its own figure)."""
        if rec.get("cached") or rec.get("cancelled"):
            return
        try:
            steps = int(rec["steps"])
            seconds = float(rec["seconds"])
            key = (str(rec["model"]), str(rec["method"]), int(rec["hyperparameters"]["generator"]["out_size"]))
        except (KeyError, TypeError, ValueError):
            return
        if steps < MIN_STEPS or seconds <= 0:  # a very short run is mostly its fixed costs: no rate to learn
            return
        with self._lock:
            (self._prior if prior else self._rates).setdefault(key, deque(maxlen=KEEP)).append(seconds / steps)
            if rec.get("steps_max"):
                self._steps.setdefault(key[:2], deque(maxlen=KEEP * 3)).append((steps, int(rec["steps_max"])))

    def observe_job(self, seconds: float, steps_seconds: float | None = None) -> None:
        """A finished job's run time (what one job ahead in the queue takes), and of that
        the seconds its steps took (the rest is the job's own cost, counted once per job)."""
        if seconds > 0:
            with self._lock:
                self._jobs.append(seconds)
                if steps_seconds is not None and 0 <= steps_seconds <= seconds:
                    self._overhead.append(seconds - steps_seconds)

    def job_overhead(self) -> float:
        """Seconds a job here spends outside its steps."""
        with self._lock:
            return statistics.median(self._overhead) if self._overhead else DEFAULT_JOB_OVERHEAD_S

    def seconds_per_step(self, model: str, method: str, size: int) -> float:
        """Measured here for this model, method and size; else for another size (scaled by
        the pixel count); else the examples' figure; else the default."""
        with self._lock:
            for table in (self._rates, self._prior):
                exact = table.get((model, method, size))
                if exact:
                    return statistics.median(exact)
                near = [(k[2], statistics.median(v)) for k, v in table.items() if k[:2] == (model, method) and v]
                if near:
                    other, rate = min(near, key=lambda kv: abs(kv[0] - size))
                    return rate * max(0.25, (size / other) ** 2)
        return DEFAULT_SECONDS_PER_STEP

    def typical_fraction(self, model: str, method: str) -> float | None:
        """The median share of its steps a recent run needed before the classifier was sure."""
        with self._lock:
            seen = self._steps.get((model, method))
            return statistics.median(min(1.0, s / m) for s, m in seen) if seen else None

    def typical_job(self) -> float | None:
        with self._lock:
            return statistics.median(self._jobs) if self._jobs else None


RATES = StepRates()


def request_seconds(model: str, method: str, steps: int | None, size: int | None, targets: int, seeds: int) -> float:
    """At most how long a request takes (it stops early once the classifier is sure): its
    steps at this server's rate, and each seed's job its own cost once."""
    from dgncore.drawing.registry import get_preset

    steps = int(steps or get_preset(method).steps)
    return (step_seconds(model, method, size, targets) * steps + RATES.job_overhead()) * max(1, seeds)


def step_seconds(model: str, method: str, size: int | None, targets: int) -> float:
    """One step of a job of ``targets`` targets at ``size`` (default: the method's) here."""
    from dgncore.drawing.registry import get_preset

    size = int(size or get_preset(method).generator.out_size)
    return RATES.seconds_per_step(model, method, size) * max(1, targets)


def typical_seconds(model: str, method: str, at_most: float) -> float | None:
    """How long such a request usually takes, where recent runs of the method show how early
    it tends to stop; None before any was seen."""
    share = RATES.typical_fraction(model, method)
    return None if share is None else at_most * share


def queue_seconds(position: int, own_job: float) -> float:
    """The wait of a job at ``position`` (1 = next): the jobs ahead, each as long as the
    recent jobs took (or as this one will, before any has finished)."""
    return max(1, position) * (RATES.typical_job() or own_job)


def observe_all(records: Iterable[dict[str, Any]], prior: bool = False) -> None:
    for rec in records:
        RATES.observe(rec, prior=prior)
