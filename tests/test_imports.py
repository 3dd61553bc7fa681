"""The package's own import graph: no circle, and no module reaching into another's private names.

Read with :mod:`ast` from the sources, so relative imports and imports inside
functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import xplayers

ROOT = Path(xplayers.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["xplayers", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING"):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return nodes


def _imports(name: str, path: Path) -> tuple[set[str], list[str]]:
    """The package modules `name` imports, and the private names it takes from other modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    private: list[str] = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            edges.update(a.name for a in node.names if a.name.split(".")[0] == "xplayers")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "xplayers":
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:  # a submodule, not a name
                    edges.add(full)
                else:
                    edges.add(source)
                    if _is_private(alias.name):
                        private.append(f"from {source} import {alias.name} (line {node.lineno})")
    edges.discard(name)
    return {e for e in edges if e in MODULES}, private


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import circle of the graph, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node][0]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read():
    assert "xplayers.gradcheck" in GRAPH
    assert "xplayers.network" in GRAPH["xplayers.gradcheck"][0]


def test_no_import_circle():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_of_other_modules(name):
    assert GRAPH[name][1] == []


def test_the_checker_finds_a_circle_and_a_private_name(tmp_path):
    """The two checks above would fail on the code they guard against."""
    (tmp_path / "mod.py").write_text(
        "from xplayers.io import _atomic_writer\ndef f():\n    from . import gradcheck\n",
        encoding="utf-8",
    )
    edges, private = _imports("xplayers.mod", tmp_path / "mod.py")
    assert "xplayers.gradcheck" in edges
    assert "xplayers.io" in edges
    assert private == ["from xplayers.io import _atomic_writer (line 1)"]


def test_every_exception_class_lives_in_errors():
    defined = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(b).endswith(("Error", "Exception")) for b in node.bases
            ):
                defined[node.name] = name
    assert defined
    assert set(defined.values()) == {"xplayers.errors"}, defined


def test_old_exception_paths_still_work():
    from xplayers import errors
    from xplayers.datasets import DatasetError
    from xplayers.io import ModelFileError
    from xplayers.training import MissingDependencyError, TrainingError

    assert DatasetError is errors.DatasetError
    assert ModelFileError is errors.ModelFileError
    assert TrainingError is errors.TrainingError
    assert MissingDependencyError is errors.MissingDependencyError


def _local_imports(path: Path) -> list[str]:
    """The imports of package modules made inside a function body of `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").split(".")[0] == "xplayers"
            ):
                found.append(
                    f"{func.name}: from {'.' * node.level}{node.module or ''} (line {node.lineno})"
                )
            elif isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "xplayers" for a in node.names
            ):
                found.append(f"{func.name}: import (line {node.lineno})")
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_package_modules_are_imported_at_the_top(name):
    """A function-local import of the package would hide a circle from the check above.

    Optional libraries (matplotlib, zarr, distributed, the backends) are
    still imported where they are used, so the package imports without them.
    """
    assert _local_imports(MODULES[name]) == []


def test_the_checker_finds_a_local_import(tmp_path):
    (tmp_path / "mod.py").write_text(
        "import numpy\ndef f():\n    import zarr\n    from xplayers.io import save\n"
        "def g():\n    from . import io\n",
        encoding="utf-8",
    )
    assert _local_imports(tmp_path / "mod.py") == [
        "f: from xplayers.io (line 4)",
        "g: from . (line 6)",
    ]
