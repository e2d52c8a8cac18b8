"""The package's import graph: imports flow one way, and no module reaches into another's private names.

The graph is read from the source (every ``import`` statement, those inside functions included), so an
import hidden in a function to dodge a circle is caught as well as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cellscreen"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """Each module's imports of other modules of the package, and every ``from m import _private``."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    private: list[tuple[str, str]] = []
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in paths)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in paths:
                        targets.add(f"{source}.{alias.name}")
                    elif source in paths:
                        targets.add(source)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append((name, f"{source}.{alias.name}"))
                if source.rpartition(".")[2].startswith("_") and source in paths:
                    # a private module may be imported only by its own package
                    if not (name == source.rpartition(".")[0] or name.startswith(source.rpartition(".")[0] + ".")):
                        private.append((name, source))
        targets.discard(name)
        edges[name] = targets
    return edges, private


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_finds_a_circle_hidden_inside_a_function(tmp_path):
    pkg = _write(tmp_path, {"__init__.py": "", "a.py": "from pkg.b import g\n",
                            "b.py": "def g():\n    from pkg import a  # hidden\n", "c.py": "from . import a\n"})
    edges, _ = import_graph(pkg)
    assert find_cycles(edges) == [["pkg.a", "pkg.b"]]
    assert edges["pkg.c"] == {"pkg.a"}


def test_finds_a_private_name_crossing_modules(tmp_path):
    pkg = _write(tmp_path, {"__init__.py": "", "a.py": "_x = 1\n__version__ = '1'\n",
                            "b.py": "from .a import _x, __version__\n"})
    _, private = import_graph(pkg)
    assert private == [("pkg.b", "pkg.a._x")]


def test_the_package_has_no_import_circle():
    edges, _ = import_graph(PACKAGE)
    assert len(edges) > 30, "the package was not found"
    assert find_cycles(edges) == []


def test_no_module_imports_another_modules_private_name():
    _, private = import_graph(PACKAGE)
    assert private == []


if __name__ == "__main__":  # prints the graph: python tests/test_imports.py
    graph, _ = import_graph(PACKAGE)
    for module in sorted(graph):
        print(module, "->", ", ".join(sorted(graph[module])) or "-")
    print("cycles:", find_cycles(graph) or "none")
