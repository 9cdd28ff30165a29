"""The import graph of ``src/otaudit``: no cycles, and the layers import only downward.

Every module is parsed with :mod:`ast`, never imported, so nothing here runs package code.
An edge ``a -> b`` is any ``import`` or ``from ... import`` in ``a`` that names ``b``: at
module level, inside a function, or under ``if TYPE_CHECKING:`` (a dependency for the type
checker is still a dependency). ``from otaudit.x import y`` is an edge to the module
``otaudit.x.y`` when there is one, else to ``otaudit.x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "otaudit"

# Cycles known today, each to be removed by the restructuring of its package. A cycle found
# is tolerated only if all its modules are in one entry here (it may shrink or split, never
# grow); everything else must be acyclic. Delete an entry once its cycle is gone.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()

# Upward imports known today, (importer, imported), each to be removed by the restructuring
# of its package. Delete an entry once the import is gone.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()


# --------------------------------------------------------------------------------------------
# The graph


@cache
def modules() -> Mapping[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _known(name: str) -> str | None:
    """``name`` if it is a module of the package, else its nearest enclosing one."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    """The package's modules that ``module`` (source at ``path``) imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    here = module if is_package else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name) for alias in node.names if _ours(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            if not _ours(base):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules() else _known(base))
    found.discard(None)
    found.discard(module)
    return {name for name in found if name is not None}


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


@cache
def graph() -> Mapping[str, frozenset[str]]:
    """Module -> the package's modules it imports."""
    return {name: frozenset(_imports(name, path)) for name, path in modules().items()}


def cycles(edges: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan), i.e. the cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reachable(start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in graph()[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    seen.discard(start)
    return seen


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# --------------------------------------------------------------------------------------------
# The checker checked


def test_cycles_finds_a_cycle_and_only_the_cycle() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e"]}
    assert sorted(map(sorted, cycles(edges))) == [["a", "b", "c"], ["e"]]


def test_the_graph_sees_every_kind_of_import() -> None:
    edges = graph()
    assert len(modules()) > 100
    assert "otaudit.errors" in edges["otaudit.checkpoint"]  # from otaudit.errors import ...
    assert "otaudit.keys" in edges["otaudit.checkpoint"]
    assert "otaudit.cli.main" in edges["otaudit.__main__"]
    assert "otaudit.datadir" in edges["otaudit.detect.process"]  # from otaudit import datadir


# --------------------------------------------------------------------------------------------
# No cycles


def test_no_import_cycles() -> None:
    found = cycles(graph())
    new = sorted(sorted(c) for c in found if not any(c <= known for known in KNOWN_CYCLES))
    assert not new, "import cycles: " + "; ".join(" <-> ".join(c) for c in new)


# --------------------------------------------------------------------------------------------
# Layers

# The foundation: each may import only the modules listed, directly or through others.
FOUNDATION: dict[str, set[str]] = {
    "otaudit.errors": set(),
    "otaudit.canonical": set(),
    "otaudit.conventions": set(),
    "otaudit.defaults": {"otaudit.conventions"},
    "otaudit.merkle": {"otaudit.errors"},
    "otaudit.record": {
        "otaudit.canonical",
        "otaudit.conventions",
        "otaudit.errors",
        "otaudit.merkle",
    },
    # Signing: note formatting at the bottom, keys above it, checkpoints above both.
    "otaudit.note": {"otaudit.errors"},
    "otaudit.smallfile": {"otaudit.errors"},
    "otaudit.keys": {"otaudit.errors", "otaudit.note", "otaudit.smallfile"},
    "otaudit.checkpoint": {
        "otaudit.errors",
        "otaudit.keys",
        "otaudit.note",
        "otaudit.smallfile",
    },
}


@pytest.mark.parametrize("module", sorted(FOUNDATION))
def test_foundation_imports_only_below(module: str) -> None:
    above = reachable(module) - FOUNDATION[module]
    assert not above, f"{module} imports {sorted(above)}, above it"


def _violations(importer_in: str, imported_in: Iterable[str]) -> set[tuple[str, str]]:
    return {
        (a, b)
        for a, targets in graph().items()
        if _in(a, importer_in)
        for b in targets
        if any(_in(b, p) for p in imported_in)
    }


def test_store_imports_no_higher_layer() -> None:
    higher = ["otaudit.detect", "otaudit.otlp", "otaudit.cli", "otaudit.readapi"]
    found = _violations("otaudit.store", higher)
    new = sorted(found - KNOWN_UPWARD)
    assert not new, f"the store imports from above it: {new}"


def test_only_the_cli_and_the_entry_point_import_the_cli() -> None:
    found = {
        (a, b)
        for a, b in _violations("otaudit", ["otaudit.cli"])
        if not _in(a, "otaudit.cli") and a != "otaudit.__main__"  # python -m otaudit
    }
    assert not found, f"the library imports the CLI: {sorted(found)}"


def test_the_library_serves_no_command() -> None:
    # The receivers, the read API and the store are what the commands run; none of them
    # reaches the CLI even indirectly.
    for module in ("otaudit.server", "otaudit.ledger", "otaudit.readapi.app", "otaudit.verify"):
        assert not {m for m in reachable(module) if _in(m, "otaudit.cli")}, module
