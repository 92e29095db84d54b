"""Serving: job specs, their execution, the in-process and Redis queues, the worker, the server's limits."""
