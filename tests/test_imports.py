"""The shape of the code: no import cycle inside dgncore (low layers never ask high ones),
and the core never imports Streamlit or the dashboard."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, package: str, module: str) -> set[str]:
    """Every module of ``package`` (dotted, like ``dgncore.drawing.optimize``) that ``path``
    imports, at the top or inside a function (a lazy import is still a dependency), leaving
    out ``if TYPE_CHECKING:`` blocks. ``module`` is the importing module's dotted name."""
    found: set[str] = set()
    here = module.rsplit(".", 1)[0] if not path.name == "__init__.py" else module

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base == package or base.startswith(f"{package}."):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # a submodule named in the list

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names if a.name.startswith(f"{package}."))

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def modules_of(package: str) -> dict[str, Path]:
    out = {}
    for p in (ROOT / package).rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of the package it imports (a package's ``__init__`` counts as
    the package; only real modules are kept)."""
    modules = modules_of(package)
    return {name: {m for m in imports_of(path, package, name) if m in modules and m != name and m != package}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle, each once (started at its smallest module name)."""
    out = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    out.append(path + [start])
                elif nxt > start and nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


#: dgncore's parts from the ground up (docs/architecture.md): a module may import its own
#: part and the parts below it, never one above
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dgncore.errors", "dgncore.paths", "dgncore.cancel", "dgncore.data"),
    ("dgncore.models",),
    ("dgncore.prior",),
    ("dgncore.drawing",),
    ("dgncore.results", "dgncore.result_files", "dgncore.evaluation"),
    ("dgncore.runs", "dgncore.limits"),
    ("dgncore.audit",),
    ("dgncore.serving",),
    ("dgncore.__main__", "dgncore.jobs", "dgncore"),
)


def layer_of(module: str) -> int:
    best = max((p for layer in LAYERS for p in layer if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def test_dgncore_has_no_import_cycle():
    graph = import_graph("dgncore")
    assert {"dgncore.models.classifiers", "dgncore.limits", "dgncore.drawing.optimize", "dgncore.results"} <= set(graph)  # the graph was read
    assert "dgncore.limits" not in graph["dgncore.models.classifiers"]  # a model loader does not ask a hosting policy
    found = cycles(graph)
    assert not found, "import cycles in dgncore: " + "; ".join(" -> ".join(c) for c in found)


def test_dgncore_imports_only_down_its_layers():
    graph = import_graph("dgncore")
    assert all(layer_of(m) is not None for m in graph)  # every module has a part
    up = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))
    assert not up, "imports that reach up a layer: " + "; ".join(up)
    assert cycles({"a": {"b"}, "b": set()}) == [] and layer_of("dgncore.audit.run") > layer_of("dgncore.drawing.optimize")


def test_no_module_both_draws_and_trains():
    graph = import_graph("dgncore")
    drawing = {m for m in graph if m.startswith("dgncore.drawing.")}
    assert not [m for m in drawing if "dgncore.prior.training" in graph[m]], "drawing imports the decoder's training code"


def test_dgncore_never_imports_streamlit_or_the_dashboard():
    for path in (ROOT / "dgncore").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in names if m.split(".")[0] in ("streamlit", "dashboard")}, path.name


def test_the_dashboard_has_no_import_cycle():
    found = cycles(import_graph("dashboard"))
    assert not found, "import cycles in dashboard: " + "; ".join(" -> ".join(c) for c in found)


#: what a web page that only shows saved pictures imports: none of it may import torch
LIGHT = ("dgncore", "dgncore.errors", "dgncore.limits", "dgncore.data", "dgncore.result_files", "dgncore.drawing.registry",
         "dgncore.serving.specs", "dgncore.serving.status", "dashboard.words", "dashboard.showcase", "dashboard.runner", "dashboard.state")


def test_the_light_parts_import_without_torch():
    import subprocess
    import sys

    code = f"import importlib, sys; [importlib.import_module(m) for m in {LIGHT!r}]; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", "torch imported by a light module: " + out.stdout
