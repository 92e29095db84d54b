"""DGN Explorer's dashboard: ``streamlit run dashboard/app.py``.

Pages (one file each under ``dashboard/views/``) are thin compositions of dgncore calls;
every image is made through :func:`dashboard.flow.generate_panel` (which puts jobs in the
queue through :func:`dashboard.runner.start_run`) and saved under the results root
(``$DGN_RESULTS``, default ``./results``), so a reload shows it again.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import runner, state  # noqa: E402
from dgncore.errors import InputError  # noqa: E402

st.set_page_config(page_title="DGN Explorer", page_icon=":material/neurology:", layout="wide")

# Not "pages/": Streamlit treats a folder of that name as an old-style multipage app and, on the
# first request of a fresh server to a sub-page URL, runs the page without this script.
VIEWS = Path(__file__).resolve().parent / "views"
#: pages that only show saved pictures (url paths; "" is the start page)
SHOWS_FILES = ("", "gallery")
try:
    hosted = state.limits().hosted
except InputError as e:  # a bad DGN_* environment variable: say which, once
    st.error(f"The server is misconfigured: {state.one_line(e)}")
    st.stop()
nav = st.navigation({
    "": [st.Page(VIEWS / "start.py", title="Start here", icon=":material/home:", default=True)],
    "Explore": [
        st.Page(VIEWS / "single_class.py", title="See a class", icon=":material/image:", url_path="single"),
        st.Page(VIEWS / "compound.py", title="Mix classes", icon=":material/join:", url_path="compound"),
        st.Page(VIEWS / "layers.py", title="Inside the layers", icon=":material/layers:", url_path="layers"),
        st.Page(VIEWS / "bias_audit.py", title="Audit a model", icon=":material/policy:", url_path="audit"),
        st.Page(VIEWS / "gallery.py", title="Gallery", icon=":material/photo_library:", url_path="gallery"),
    ],
})

st.sidebar.markdown("### DGN Explorer")
st.sidebar.caption("See what a trained image classifier has learned: the picture it finds most typical of a class, a filter or a neuron.")
choice = state.model_sidebar()
# the start page and the gallery show saved files: they draw without torch or the model
classifier = None if nav.url_path in SHOWS_FILES else state.load_model(choice)
st.session_state["_model_choice"] = choice
st.session_state["_classifier"] = classifier
if classifier is not None:
    st.sidebar.caption(f"{len(classifier.classes)} classes · sees {classifier.input_size} px pictures · runs on {classifier.device.type}")
if nav.url_path == "audit":
    st.sidebar.caption("The whole-model audit of a built-in demo model uses its own small built-in model, not this one.")
if hosted:
    st.sidebar.caption(f"A shared demo: {state.limits().limits_text()}.")
else:
    st.sidebar.caption(f"Pictures are saved in `{runner.results_root()}`.")

nav.run()
