"""Start here: what DGN Explorer is, ready-made examples, and three doors."""

from __future__ import annotations

import streamlit as st

from dashboard import runner, showcase, words

SINGLE = "views/single_class.py"
#: the Single-class page's settings: a link that carries them (an old link to "/") goes there
SINGLE_PARAMS = ("class", "method", "steps", "size", "seed", "n", "compare")

if any(p in st.query_params for p in SINGLE_PARAMS):
    st.switch_page(SINGLE, query_params=st.query_params.to_dict())

st.title("DGN Explorer")
st.markdown(
    "Pick anything an image classifier knows (a koala, a volcano, a violin) and DGN Explorer paints the picture "
    "that network finds most typical of it. Every picture is scored again exactly as you download it, and a second, "
    "independent network gives its own opinion, so a real likeness and a fooled score look different. "
    "Use it to see what a model has learned, and to catch it relying on the wrong clue."
)

examples = showcase.strip()
if examples:
    st.subheader("Ready-made examples", anchor=False)
    st.caption("What EfficientNet-Lite0 finds most typical of a few classes. Under each: how sure it is of its picture, "
               "and which real photos it is nearest to in the eyes of a second network (EfficientNet-Lite2, which had no part in making it).")
    cols = st.columns(len(examples))
    for col, rec in zip(cols, examples):
        with col:
            st.image(rec["_file"], width="stretch")
            st.page_link(SINGLE, label=words.md(rec.get("target_label", "")),
                         query_params={"class": rec.get("target_label", ""), "method": rec["method"], "steps": str(rec.get("steps_max", ""))},
                         help="Open it on the See a class page, with the settings it was made with.")
            st.caption(words.md(f"{words.compact_verdict(rec)} · {words.method_short(rec['method'])}"))
    other = showcase.other_method(examples[0])
    if other:
        first = examples[0]
        st.page_link(SINGLE, label=words.md(f"{first.get('target_label', '')}: {words.method_short(first['method'])} and {words.method_short(other)}, side by side"),
                     query_params={"class": first.get("target_label", ""), "method": first["method"], "compare": other, "steps": str(first.get("steps_max", ""))},
                     icon=":material/compare:", help="The same class drawn by two methods, both made beforehand, on the See a class page.")
else:
    st.info("No ready-made examples on this server (see dashboard/examples/README.md to make them).")

st.subheader("Where to go", anchor=False)
doors = [
    (SINGLE, "See a class", ":material/image:", "Pick one of the classifier's classes and watch its picture appear."),
    ("views/bias_audit.py", "Audit a model", ":material/policy:", "Check whether a model learned a shortcut instead of the object."),
    ("views/gallery.py", "Browse the gallery", ":material/photo_library:", "Every picture made so far, and the examples, at once."),
]
for col, (target, title, icon, text) in zip(st.columns(3), doors):
    with col, st.container(border=True):
        st.page_link(target, label=title, icon=icon)
        st.caption(text)
with st.expander("How does it work?"):
    st.markdown(
        "A classifier was trained to name what is in a photo. DGN Explorer keeps it frozen and changes a picture, "
        "step by step, so that the classifier grows surer that it shows the class you picked, while other classes "
        "are held down. How the picture is changed is the *method*: a drawing network as in the paper by Despraz et al. "
        "(2017), or the pixels themselves as the usual baselines. Each finished picture is saved, read back and "
        "scored again, and shown to a second network that had no part in making it."
    )
    st.caption(" · ".join(f"**{words.method_label(m)}**: {words.method_blurb(m)}" for m in runner.methods()))
