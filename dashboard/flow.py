"""The Generate -> run -> show flow that every page shares.

:func:`generate_panel` draws the Generate button with the time the run will take, a
"Copy link" button, and then one of: the live progress of a run (a fragment that redraws
itself, with the stage, the time left in seconds and a Stop button that works while the
job waits in the queue too), the results of the run that just ended, the saved results
of exactly these settings (made before, or a shipped example), or a note that says they
are not made yet and how long making them takes. The page draws the results it gets
back in its own layout.

A run is a :class:`dashboard.runner.LiveRun`: its jobs wait and run in the queue, and the
page only follows them, so a rerun, a page switch or a closed tab does not stop them; a
reloaded page with the same settings finds the run still going and follows it again.
"""

from __future__ import annotations

import json
from typing import Any, Sequence
from urllib.parse import urlencode

import streamlit as st

from dashboard import eta, page, runner, words
from dashboard.runner import LiveRun, Request
from dgncore.drawing.registry import get_preset
from dgncore.errors import InputError
from dgncore.serving.status import QueueUnavailable

RUNS = "_dgn_runs"
#: how often the live view redraws itself (seconds): as often as a job makes a new preview
#: (``dgncore.serving.execute.PREVIEW_EVERY_S``); each redraw takes the interpreter from the
#: job's loop in this process, so redrawing faster shows nothing new and slows the job
#: (bench/README.md, "click_to_picture.py")
LIVE_EVERY_S = 1.0


def generate_panel(key: str, requests: Sequence[Request], ready: bool = True, label: str = "Generate") -> list[list[dict[str, Any]]] | None:
    """The shared flow for ``requests`` (see the module docstring). Returns the records,
    one list per request, when there are results to show for exactly these requests."""
    runs: dict[str, LiveRun] = st.session_state.setdefault(RUNS, {})
    run = runs.get(key)
    if (run is None or run.done) and requests and (going := runner.running_run(requests)) is not None:
        run = runs[key] = going  # started before a reload, or in another tab: follow it
    busy = run is not None and not run.done
    estimate = sum(r.seconds() for r in requests) if requests else None
    go_col, note_col, link_col = st.columns([1.2, 4, 1.2], vertical_alignment="center")
    go = go_col.button(label, type="primary", icon=":material/brush:", disabled=not (ready and requests) or busy, key=f"{key}.generate", width="stretch")
    if requests and ready and not busy:
        note_col.caption(time_note(requests, estimate))
    with link_col:
        copy_link_button(key)
    again = run is not None and run.done and (run.error or run.bug) and run.keys() == [r.key() for r in requests]
    if go or (again and st.button("Try again", key=f"{key}.retry", icon=":material/refresh:", help="Send the same request to the queue again.")):
        try:
            runs[key] = runner.start_run(requests)
        except InputError as e:
            page.error(e)
            return None
        except QueueUnavailable as e:
            page.error(f"{e}: try again in a minute")
            return None
        st.rerun()  # the page again, with the run: its buttons drawn as they now are
    if run is not None and not run.done:
        live(key)
        return None
    if run is not None and run.keys() == [r.key() for r in requests]:
        if run.error:
            page.error(run.error)
            return None
        if run.bug:
            st.error(f"Something went wrong inside DGN Explorer ({run.bug}); the details are in the server log.")
            return None
        if run.cancelled:
            st.warning("Stopped. The pictures below are where the run was when you stopped it; they are saved and marked as stopped.")
        return run.records
    if not requests or not ready:
        return None
    saved = saved_results(requests)
    if saved is None:
        st.info(f"Not made yet with these settings: press **{label}** to make {'it' if _count(requests) == 1 else 'them'}.",
                icon=":material/hourglass_empty:")
        return None
    if all(r.get("example") for recs in saved for r in recs):
        st.caption("A ready-made example with exactly these settings, shown from disk (nothing computed).")
    else:
        st.caption("These exact settings were made before: shown from disk (nothing computed).")
    return saved


def time_note(requests: Sequence[Request], at_most: float) -> str:
    """"Usually about 20 s here, at most about 1 min 40 s", from this server's step rates."""
    usual = [eta.typical_seconds(r.model_name or r.model_spec, r.method, r.seconds()) for r in requests]
    # a filter has no "sure" to stop at, and a method without an early stop runs all its steps
    stops_early = all(t.startswith("class") for r in requests for t in r.target_texts) and all(get_preset(r.method).early_stop for r in requests)
    if stops_early and all(u is not None for u in usual):
        return (f"Usually {words.seconds_text(sum(usual))} on this server, at most {words.seconds_text(at_most)} "
                "(it stops once the classifier is sure).")
    if not stops_early:
        return f"Takes {words.seconds_text(at_most)} on this server."
    return f"Takes up to {words.seconds_text(at_most)} on this server (less when the classifier is sure early)."


def _count(requests: Sequence[Request]) -> int:
    return sum(len(r.target_texts) * len(r.seeds) for r in requests)


def saved_results(requests: Sequence[Request]) -> list[list[dict[str, Any]]] | None:
    """The records of every request if all are on disk (results or examples), else None."""
    out = []
    try:
        for r in requests:
            recs = runner.find_saved(r)
            if recs is None:
                return None
            out.append(recs)
    except InputError as e:  # it says what to fix; the page shows it once, above
        page.error(e)
        return None
    return out


# --------------------------------------------------------------------------- the live view


def stage_text(run: LiveRun) -> str:
    """Where the run is, with the time left: the label of its st.status."""
    req, seed_no, seeds = run.where()
    what = words.md(req.label or words.method_label(req.method))
    left = words.seconds_text(run.seconds_left())
    stage = run.stage()
    if stage == "queued" and run.no_worker:
        return f"{what}: waiting for a worker; none is taking jobs right now (the server's workers may be restarting)"
    if stage == "queued":
        place = run.position or 1
        ahead = "next in the queue" if place == 1 else f"waiting in the queue, {words.plural(place - 1, 'job')} ahead"
        return f"{what}: {ahead} · {left} left in all"
    busy = " · slower than expected: the server is busy" if run.slower_than_expected() else ""
    if stage == "starting":
        return f"{what}: starting (loading the model) · {left} left{busy}"
    if stage == "saving":
        return f"{what}: saving the picture and scoring it again, with a second opinion"
    bits = [what]
    if len(run.requests) > 1:
        bits.append(f"part {run.requests.index(req) + 1} of {len(run.requests)}")
    if seeds > 1:
        bits.append(f"picture {seed_no + 1} of {seeds}")
    job = run.current()
    if job is not None and job.status is not None:
        bits.append(f"step {job.status.step} of {job.status.total}")
    bits.append(f"{left} left")
    return " · ".join(bits) + busy


@st.fragment(run_every=LIVE_EVERY_S)
def live(key: str) -> None:
    """The run's progress, redrawn every LIVE_EVERY_S seconds; the whole page reruns once it
    has ended (to show the results)."""
    run = st.session_state.get(RUNS, {}).get(key)
    if run is None:
        return
    if run.poll().done:
        st.rerun()
    stopping = run.cancelled
    if run.unavailable:
        label = f"Waiting for the job queue: {run.unavailable}"
    else:
        label = stage_text(run) if not stopping else "Stopping: keeping what the run has made so far …"
    # not `with`: leaving a st.status block marks it complete, and this one is still running
    box = st.status(label, state="running", expanded=True)
    box.progress(run.fraction())
    draw_preview(run, key, box)
    if not stopping and run.can_stop() and box.button(
            "Stop", key=f"{key}.run_stop", icon=":material/stop_circle:",
            help="Stop the run; what it has made so far is saved. A job still waiting in the queue is taken out of it."):
        run.stop()
        st.rerun(scope="fragment")


def draw_preview(run: LiveRun, key: str, box) -> None:
    """The latest candidates and the curve of how sure the classifier is becoming, in ``box``."""
    from dashboard import charts

    if run.stage() not in ("running", "saving") or not run.preview:
        return
    req, _, _ = run.where()
    st_ = run.current().status
    imgs = list(run.preview)[:16]  # the job's own PNGs, drawn as they came
    labels = list(req.target_labels or req.target_texts)
    captions = [words.md(words.short(t, 22)) for t in labels[: len(imgs)]]
    figure = charts.curve(st_.activation, st_.checks, labels, height=240)
    if len(imgs) == 1:
        left, right = box.columns([2, 3])
        left.image(imgs, width=256, caption=captions)
        right.plotly_chart(figure, key=f"{key}.live.curve", width="stretch")
    else:
        box.image(imgs, width=128 if len(imgs) <= 6 else 96, caption=captions)
        box.plotly_chart(figure, key=f"{key}.live.curve", width="stretch")


# --------------------------------------------------------------------------- sharing


def share_link() -> str:
    """This view's address with all its settings (the browser's URL as the app knows it)."""
    base = st.context.url or ""
    query = urlencode(st.query_params.to_dict())
    return base + (f"?{query}" if query else "")


def copy_link_button(key: str) -> None:
    """"Copy link": the view's address to the clipboard (where the browser allows it) and on
    the page, with the code block's own copy icon as the fallback."""
    if st.button("Copy link", key=f"{key}.copy_link", icon=":material/link:", width="stretch",
                 help="A link to this view with all its settings: whoever opens it sees the same pictures."):
        st.session_state[f"{key}.link.shown"] = True
    if st.session_state.get(f"{key}.link.shown"):
        _show_link(key)


@st.dialog("Link to this view")
def _dialog(url: str) -> None:
    st.code(url, language=None, wrap_lines=True)
    st.html(f"<script>navigator.clipboard && navigator.clipboard.writeText({json.dumps(url)}).catch(() => {{}});</script>",
            unsafe_allow_javascript=True)
    st.caption("Copied to your clipboard where the browser allows it; the icon at the right of the link copies it too. "
               "Whoever opens it sees the same settings, and the pictures already made come straight from disk.")


def _show_link(key: str) -> None:
    st.session_state[f"{key}.link.shown"] = False
    _dialog(share_link())
