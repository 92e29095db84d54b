"""What every page starts with: its plain-words introduction, the model it works on, and
one-line errors."""

from __future__ import annotations

import streamlit as st

from dashboard import state

#: dgncore's messages point to the CLI; here the same list is on the page
_CLI_HINTS = {
    "search the list with: python -m dgncore classes": "type a part of its name in the class list",
    "list them with: python -m dgncore layers": "pick one from the list of layers",
}


def intro(text: str) -> None:
    """A short plain-words note under the title (markdown; escape user names with words.md)."""
    st.caption(text)


def error(e: BaseException | str) -> None:
    """One line, no traceback."""
    text = state.one_line(e) if isinstance(e, BaseException) else str(e)
    for cli, here in _CLI_HINTS.items():
        text = text.replace(cli, here)
    st.error(text)


def need_model():
    """The classifier chosen in the sidebar, or stop the page with a note."""
    choice, clf = state.current()
    if clf is None:
        st.info("Choose a model that loads in the sidebar to use this page.")
        st.stop()
    return choice, clf
