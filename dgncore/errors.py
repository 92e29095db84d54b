"""The one exception type for mistakes a user can make and fix themselves.

Anything raised as `InputError` is shown to people as a single line (the CLI prints
it and exits 2, the dashboard shows it with `st.error`); everything else is a bug.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a person: a wrong class name, an unreadable file, a too-large request."""
