"""The shape of the code: no import cycle inside dgncore (low layers never ask high ones),
and the core never imports Streamlit or the dashboard."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, package: str) -> set[str]:
    """Every module of ``package`` that ``path`` imports, at the top or inside a function
    (a lazy import is still a dependency), leaving out ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif node.module and node.module.startswith(f"{package}."):
                found.add(node.module.split(".")[1])
            elif node.module == package:
                found.update(a.name for a in node.names)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package}."))

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    modules = {p.stem: p for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in imports_of(path, package) if m in modules and m != name} for name, path in modules.items()}


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


def test_dgncore_has_no_import_cycle():
    graph = import_graph("dgncore")
    assert {"classifiers", "hosting", "optimize", "results"} <= set(graph)  # the graph was read
    assert "hosting" not in graph["classifiers"]  # a model loader does not ask a hosting policy
    found = cycles(graph)
    assert not found, "import cycles in dgncore: " + "; ".join(" -> ".join(c) for c in found)


def test_dgncore_never_imports_streamlit_or_the_dashboard():
    for path in (ROOT / "dgncore").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in names if m.split(".")[0] in ("streamlit", "dashboard")}, path.name


def test_the_dashboard_has_no_import_cycle():
    found = cycles(import_graph("dashboard"))
    assert not found, "import cycles in dashboard: " + "; ".join(" -> ".join(c) for c in found)
