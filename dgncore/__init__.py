"""DGN Explorer's core: activation maximisation with deep generative networks
(Despraz et al., IJCCI 2017), importable without Streamlit, on CPU or GPU.

    from dgncore import load_classifier, parse_target, make_preset, generate
    clf = load_classifier("efficientnet_lite0")
    records = generate(clf, [parse_target("class:tench", clf)], make_preset(), "out/")
"""

from .api import class_targets, gallery, generate, make_preset
from .classifiers import Classifier, load_classifier
from .errors import InputError
from .objectives import Target, parse_target
from .optimize import optimize

__all__ = ["Classifier", "InputError", "Target", "class_targets", "gallery", "generate", "load_classifier", "make_preset", "optimize", "parse_target"]
