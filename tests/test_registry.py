"""The registry of methods: every list of methods is read from it, and each method it lists can draw."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from dgncore.audit import intervention
from dgncore.audit import methods as audit_methods
from dgncore.drawing import registry
from dgncore.drawing.objectives import parse_target
from dgncore.drawing.optimize import build_source, optimize
from dgncore.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_every_list_of_methods_comes_from_the_registry():
    assert registry.METHODS[0] == registry.DEFAULT_METHOD == "natural"
    assert audit_methods.AUDIT_METHODS == registry.METHODS
    assert audit_methods.DEFAULT_METHODS == ("pretrained", "untrained", "pixel")
    assert intervention.DEFAULT_METHODS == tuple(m for m in registry.METHODS if m != "pixel")
    # the paper's Table 1 presets stand beside ours, under the method that draws them
    assert [p.name for p in registry.REGISTRY["untrained"].presets] == ["untrained", "untrained-paper"]
    assert registry.get_preset("pretrained-paper").method == "pretrained" and registry.get_preset("pretrained-paper").steps == 1200
    with pytest.raises(InputError, match="choose one of natural"):
        registry.get_method("nope")


def _string_lists(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            yield [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def test_no_list_of_methods_outside_the_registry():
    names = set(registry.METHODS)
    found = []
    for path in [*(ROOT / "dgncore").rglob("*.py"), *(ROOT / "dashboard").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        if path.name == "registry.py":
            continue
        for items in _string_lists(ast.parse(path.read_text(encoding="utf-8"))):
            if len(names & set(items)) >= 2:
                found.append(f"{path.relative_to(ROOT)}: {items}")
    assert not found, "method lists outside dgncore/drawing/registry.py: " + "; ".join(found)


@pytest.mark.parametrize("method", [m for m in registry.METHODS if m != "pretrained"])  # pretrained: tests/test_pretrain.py
def test_every_method_builds_its_source_and_draws(tiny_classifier, method):
    preset = registry.make_preset(method, steps=2, size=32, **({"width": 0.0625} if method == "untrained" else {}))
    source = build_source(preset, 2, torch.device("cpu"))
    assert source().shape == (2, 3, 32, 32)
    run = optimize(tiny_classifier, [parse_target("class:hen", tiny_classifier)], preset, seed=0)
    assert run.images.shape == (1, 3, 32, 32) and run.preset.method == method
