"""Which queue this process uses (in-process, or Redis when ``REDIS_URL`` is set), and the ``worker`` command line."""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Callable

from dgncore.errors import InputError, one_line
from dgncore.limits import Limits
from dgncore.serving.local_queue import LocalQueue
from dgncore.serving.rq_queue import RedisQueue, rq_serializer
from dgncore.serving.status import JobQueue

#: how long a serving worker waits for Redis at its start before it gives up
REDIS_START_WAIT_S = 120

_queue: JobQueue | None = None
_queue_lock = threading.Lock()


def get_queue() -> JobQueue:
    """The process-wide queue: RQ when REDIS_URL is set, else in-process. It follows the
    environment: when the settings change, later jobs go to a new queue (the old one
    finishes what it has; callers keep polling the queue they submitted to)."""
    global _queue
    settings = Limits.from_env()
    with _queue_lock:
        if _queue is None or _queue.settings != settings:
            old = _queue
            _queue = RedisQueue(settings) if settings.redis_url else LocalQueue(settings)
            if old is not None:
                old.retire()
        return _queue


def reset_queue() -> None:
    """Forget the singleton (tests; after changing the environment)."""
    global _queue
    with _queue_lock:
        if _queue is not None:
            _queue.close()
        _queue = None


def register_cli(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``python -m dgncore worker``: run jobs from the Redis queue (one at a time)."""
    p.description = "Run generation jobs from the Redis queue (REDIS_URL); one worker per device."
    p.add_argument("--redis", help="Redis URL (default: $REDIS_URL)")
    p.add_argument("--queue", help="queue name (default: $DGN_QUEUE_NAME or dgn)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: $DGN_DEVICE or auto)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: $DGN_THREADS, else every core; workers that share a machine split its cores)")
    p.add_argument("--name", help="worker name (default: host and pid)")
    return _cmd_worker


def _cmd_worker(args: argparse.Namespace) -> int:
    import os

    if args.redis:
        os.environ["REDIS_URL"] = args.redis
    if args.queue:
        os.environ["DGN_QUEUE_NAME"] = args.queue
    if args.device:
        os.environ["DGN_DEVICE"] = args.device
    settings = Limits.from_env()
    if not settings.redis_url:
        raise InputError("worker needs a Redis server: set REDIS_URL or pass --redis redis://HOST:6379/0")
    from dgncore.models.classifiers import pick_device

    pick_device(settings.device)  # a bad device is an error now, not at the first job
    threads = args.threads if args.threads is not None else settings.threads or None
    if threads is not None:
        if not 1 <= threads <= 512:
            raise InputError("--threads must be between 1 and 512")
        import torch

        torch.set_num_threads(threads)
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq import Queue, SimpleWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("dgncore.worker")
    away = (RedisConnectionError, RedisTimeoutError)
    conn = Redis.from_url(settings.redis_url)
    # a worker that serves (not --burst) waits for Redis, at its start and whenever it goes
    # away, so that a restarted Redis finds its workers still there
    deadline = time.monotonic() + (0 if args.burst else REDIS_START_WAIT_S)
    while True:
        try:
            conn.ping()
            break
        except away as e:
            if time.monotonic() >= deadline:
                raise InputError(f"cannot reach Redis at {settings.redis_url[:80]}: {one_line(e)}") from e
            log.warning("waiting for Redis at %s: %s", settings.redis_url[:80], one_line(e))
            time.sleep(2)
    queue = Queue(settings.queue_name, connection=conn, serializer=rq_serializer())
    wait = 1.0
    while True:
        # SimpleWorker runs jobs in this process: the classifier stays loaded between jobs,
        # and CUDA works (a forked work horse cannot reuse a CUDA context).
        try:
            worker = SimpleWorker([queue], connection=conn, serializer=rq_serializer(), name=args.name)  # it asks Redis too
            worker.work(burst=args.burst, with_scheduler=False)
            return 0
        except away as e:
            if args.burst:
                raise InputError(f"lost Redis at {settings.redis_url[:80]}: {one_line(e)}") from e
            log.warning("Redis went away (%s): trying again in %.0f s", one_line(e), wait)
            time.sleep(wait)
            wait = min(wait * 2, 30.0)
