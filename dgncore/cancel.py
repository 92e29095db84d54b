"""Stopping long work: a cancel is a function that says "stop now", or a threading.Event.

Every long call (the loop, an audit, an index, a prior) takes either and asks it between
steps; this turns both into the one function those calls ask.
"""

from __future__ import annotations

import threading
from typing import Callable, Union

CancelFn = Callable[[], bool]
#: what a long call accepts as its ``cancel`` argument
Cancel = Union[CancelFn, threading.Event, None]


def never() -> bool:
    return False


def cancel_fn(cancel: Cancel) -> CancelFn:
    """The function to ask: an Event's ``is_set``, the function itself, or one that never stops."""
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel or never
