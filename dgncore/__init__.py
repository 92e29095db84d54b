"""DGN Explorer's core: activation maximisation with deep generative networks
(Despraz et al., IJCCI 2017), importable without Streamlit, on CPU or GPU.

    from dgncore import load_classifier, parse_target, make_preset, generate
    clf = load_classifier("efficientnet_lite0")
    records = generate(clf, [parse_target("class:tench", clf)], make_preset(), "out/")
"""

from dgncore.drawing.objectives import Target, parse_target
from dgncore.drawing.optimize import optimize
from dgncore.drawing.registry import make_preset
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier, load_classifier
from dgncore.runs import class_targets, draw_classes, generate

__all__ = ["Classifier", "InputError", "Target", "class_targets", "draw_classes", "generate", "load_classifier", "make_preset", "optimize", "parse_target"]
