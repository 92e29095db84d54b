"""Jobs of the app's own queue run in a child process, so the web server's threads never share torch's thread pool.

Beside a busy process, a job in the web server's thread ran far slower than the same job
in a process of its own (bench/README.md, "click_to_picture.py"). The child lives across jobs (the classifier stays loaded), is started on the first
job, and is started anew after it dies; a job whose child died is "lost", said in one line.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
from typing import Any, Callable

from dgncore.limits import Limits

log = logging.getLogger(__name__)

#: the OpenMP threads of a process that runs jobs sleep between parallel regions instead of
#: spinning, so what shares its cores (the web server's live view, the browser on a one-machine
#: install, another worker) gets them (bench/README.md, "click_to_picture.py"); an
#: OMP_WAIT_POLICY in the environment wins
WAIT_POLICY = "PASSIVE"

#: how often the parent looks at the cancel flag while it waits for the child's messages
POLL_S = 0.2

CHILD_LOST = "the process running this picture stopped before it finished (killed, or out of memory); what it had made is kept, and Try again runs it anew"


class JobLost(RuntimeError):
    """The child process died while it ran a job."""


def quiet_openmp() -> None:
    """Give this process :data:`WAIT_POLICY` unless the environment names one; only before
    torch loads (OpenMP reads it once). The job child and ``python -m dgncore worker`` (in
    :func:`dgncore.__main__.main`, before any subcommand loads torch) call it."""
    if "torch" in sys.modules:
        log.warning("torch was loaded before the job process could set OMP_WAIT_POLICY")
        return
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def _serve(conn: multiprocessing.connection.Connection, cancel: Any, settings: Limits) -> None:
    """The child's loop: one job per message, reports and the outcome sent back."""
    quiet_openmp()
    from dgncore.serving.execute import execute

    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        try:
            result = execute(spec, settings, lambda info: conn.send(("report", info)), cancel.is_set)
            conn.send(("done", result))
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the queue, which words it
            try:
                conn.send(("raised", e))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                conn.send(("raised", RuntimeError(f"{type(e).__name__}: {e}")))


class JobProcess:
    """One child process that runs :func:`dgncore.serving.execute.execute` for its caller, one job at a time."""

    def __init__(self, settings: Limits) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._cancel: Any = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def _start(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self.stop()
        parent, child = self._ctx.Pipe()
        self._cancel = self._ctx.Event()
        self._proc = self._ctx.Process(target=_serve, args=(child, self._cancel, self.settings), name="dgn-job", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def execute(
        self,
        spec: Any,
        report: Callable[[dict[str, Any]], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """:func:`execute` with this process's settings, run in the child; :class:`JobLost` if the child dies."""
        with self._lock:
            self._start()
            assert self._conn is not None
            self._cancel.clear()
            self._conn.send(spec)
            while True:
                if cancel is not None and cancel():
                    self._cancel.set()
                try:
                    if not self._conn.poll(POLL_S):
                        if not self._proc.is_alive():
                            raise JobLost(CHILD_LOST)
                        continue
                    kind, payload = self._conn.recv()
                except (EOFError, OSError) as e:
                    self.stop()
                    raise JobLost(CHILD_LOST) from e
                if kind == "report":
                    if report is not None:
                        report(payload)
                elif kind == "done":
                    return payload
                else:
                    raise payload

    def stop(self, timeout: float = 5.0) -> None:
        """End the child (it finishes nothing: callers cancel first)."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
            conn.close()
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout)
