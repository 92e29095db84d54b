"""The controls pages share: one searchable list of the classes, and the "Advanced"
settings (method, steps, image size, start, samples, a second method to compare).

Every value lives in the URL query (see :mod:`dashboard.state`), so a link brings the
same view back. The default view of a page is its target and one button; everything
here except the class list sits in a closed "Advanced" expander.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import page, runner, state, words
from dgncore.drawing.registry import get_preset
from dgncore.errors import InputError

SIZES = [32, 64, 96, 128, 160, 224, 256, 320, 384, 512]
DEFAULT_SIZE = 224
NONE = "none"


def class_label(clf, i: int) -> str:
    """"koala · 105 · koala bear, kangaroo bear, …": the name, the index, the synonyms (all searchable)."""
    synonyms = [s.strip() for s in clf.descriptions[i].split(",")[1:] if s.strip()]
    rest = f" · {words.short(', '.join(synonyms), 48)}" if synonyms else ""
    return f"{clf.classes[i]} · {i}{rest}"


def class_param(clf, i: int) -> str:
    """The class as the URL says it: its name when that names it alone, else its index."""
    name = clf.classes[i]
    try:
        return name if clf.class_index(name) == i else str(i)
    except InputError:
        return str(i)


def class_picker(clf, key: str, param: str | None = "class", default: str = "tench", label: str = "Class", **kwargs: Any) -> int:
    """One searchable list of every class (type a name, a synonym or an index). The first
    value comes from the widget's state, then the URL (``?class=koala`` or ``?class=105``),
    then ``default``; a class in the URL that this model does not know is one error line."""
    n = clf.n_classes
    try:
        fallback = clf.class_index(default)
    except InputError:
        fallback = 0
    kept = st.session_state.setdefault(state.KEPT, {})
    if not isinstance(st.session_state.get(key), int) or not 0 <= st.session_state[key] < n:
        value = kept.get(key)
        if not isinstance(value, int) or not 0 <= value < n:
            value = fallback
            raw = st.query_params.get(param) if param else None
            if raw:
                try:
                    value = clf.class_index(raw[: state.MAX_TEXT])
                except InputError as e:  # said until another class is picked
                    st.session_state[f"{key}.bad_link"] = f"The link asks for a class this model does not know: {state.one_line(e)}"
        st.session_state[key] = value
    idx = st.selectbox(label, list(range(n)), key=key, format_func=lambda i: class_label(clf, i),
                       help="Type to search: a name, a synonym or the class number.", **kwargs)
    if st.session_state.get(f"{key}.bad_link"):
        if idx == fallback:
            page.error(st.session_state[f"{key}.bad_link"])
        else:
            del st.session_state[f"{key}.bad_link"]
    kept[key] = idx
    if param:
        text = class_param(clf, idx)
        if idx == fallback:
            if param in st.query_params:
                del st.query_params[param]
        elif st.query_params.get(param) != text:
            st.query_params[param] = text
    return int(idx)


def method_select(page_key: str, label: str = "Method", param: str = "method", default: str | None = None) -> str:
    """The method, by what a person gets (the paper's name second); dgncore's list."""
    options = runner.methods()
    return state.widget(st.selectbox, label, f"{page_key}.method", default or runner.default_method(), param, options=options,
                        format_func=words.method_label,
                        help="\n\n".join(f"**{words.method_label(m)}**: {words.method_blurb(m)}" for m in options))


def _non_default(params: dict[str, Any]) -> bool:
    return any(p in st.query_params for p in params)


def advanced(page_key: str, compare: bool = False, samples: bool = False, extra=None) -> dict[str, Any]:
    """Method, steps, image size, start (seed), samples and a second method, in a closed
    "Advanced" expander (open when the link sets any of them). ``extra``: a callable
    drawing page-specific settings at the top of the expander."""
    lim = state.limits()
    sizes = [s for s in SIZES if s <= lim.max_size]
    default_size = DEFAULT_SIZE if DEFAULT_SIZE in sizes else sizes[-1]
    open_ = _non_default({"method": 1, "steps": 1, "size": 1, "seed": 1, "n": 1, "compare": 1})
    out: dict[str, Any] = {}
    with st.expander("Advanced: method, steps, size, variant", expanded=open_, icon=":material/tune:"):
        if extra is not None:
            out.update(extra() or {})
        first = st.columns(2 if compare else [1, 1])
        with first[0]:
            out["method"] = method_select(page_key)
        if compare:
            with first[1]:
                out["compare"] = state.widget(st.selectbox, "Compare with a second method, side by side", f"{page_key}.compare", NONE,
                                              "compare", options=[NONE] + runner.methods(),
                                              format_func=lambda m: "no comparison" if m == NONE else words.method_label(m))
        st.caption(words.method_blurb(out["method"]))
        cols = st.columns(4 if samples else 3)
        with cols[0]:
            # each method starts from its own preset's steps (so its ready-made examples match)
            preset_steps = get_preset(out["method"]).steps
            out["steps"] = state.widget(st.number_input, "Steps (at most)", f"{page_key}.steps.{out['method']}", min(preset_steps, lim.max_steps),
                                        "steps", min_value=1, max_value=lim.max_steps, step=10,
                                        help="How many small changes the picture may get. Most methods stop early once the classifier is 99% sure. "
                                             + ("A method compared side by side keeps its own usual steps until you change these." if compare else ""))
        with cols[1]:
            out["size"] = state.widget(st.selectbox, "Picture size (px)", f"{page_key}.size", default_size, "size", options=sizes,
                                       help="Side of the picture; smaller is faster. The classifier sees it resized to its own input size.")
        with cols[2]:
            out["seed"] = state.widget(st.number_input, "Variant", f"{page_key}.seed", 0, "seed", min_value=0, max_value=2**31 - 1, step=1,
                                       help="Each number gives another picture from another random start (its seed); "
                                            "the same number and settings give the same picture again, from disk.")
        if samples:
            with cols[3]:
                out["samples"] = state.widget(st.number_input, "Pictures", f"{page_key}.n", 1, "n", min_value=1, max_value=8, step=1,
                                              help="How many variants to make (the variant number, the next one, ...).")
        if not runner.method_ready(out["method"]):
            page.error(f"{words.method_label(out['method'])} needs its decoder file, which is not on this server: choose another method.")
    return out


def steps_for(method: str, opts: dict[str, Any]) -> int:
    """The steps for ``method`` on a page that draws it beside ``opts["method"]``: the steps
    chosen, or, while they are still the first method's preset, ``method``'s own preset
    (each method as it ships, so a side-by-side of shipped examples opens from disk)."""
    steps, cap = int(opts["steps"]), state.limits().max_steps
    if method == opts["method"] or steps != min(get_preset(opts["method"]).steps, cap):
        return steps
    return min(get_preset(method).steps, cap)


def size_arg(size: int | None, method: str) -> int | None:
    """None when the size is the preset's default (keeps folder names short)."""
    from dgncore.drawing.registry import get_preset

    try:
        return None if size == get_preset(method).generator.out_size else size
    except InputError:
        return size
