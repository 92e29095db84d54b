"""The name RQ has always enqueued (``dgncore.jobs.execute_rq``); the queue lives in :mod:`dgncore.serving`."""

from dgncore.serving.rq_queue import execute_rq

__all__ = ["execute_rq"]
