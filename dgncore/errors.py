"""The one exception type for mistakes a user can make and fix themselves.

Anything raised as `InputError` is shown to people as a single line (the CLI prints
it and exits 2, the dashboard shows it with `st.error`); everything else is a bug.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a person: a wrong class name, an unreadable file, a too-large request."""


def one_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when it says nothing), cut to ``limit``:
    what a person is shown, and what a job's status or a log line carries."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]
