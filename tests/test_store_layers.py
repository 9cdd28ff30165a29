"""The store sits low: it imports the record, the tree and the errors, never the layers
that use it (detection, decoding, the server, the CLI).

Checked in a fresh interpreter, so what counts is every module an import of the
store actually loads, however indirectly.
"""

from __future__ import annotations

import subprocess
import sys

#: The otaudit modules below the store (the store's own modules aside).
BELOW_THE_STORE = frozenset({
    "otaudit", "otaudit._core", "otaudit.canonical", "otaudit.conventions", "otaudit.dialect",
    "otaudit.errors", "otaudit.merkle", "otaudit.record", "otaudit.sqllimits", "otaudit.tree",
})  # fmt: skip
STORE_MODULES = (
    "otaudit.store.sqlite", "otaudit.store.postgres", "otaudit.store.sql",
    "otaudit.store.sqlite_query", "otaudit.store.postgres_query", "otaudit.tree",
)  # fmt: skip


def _loaded_by(modules: tuple[str, ...]) -> set[str]:
    code = (
        f"import importlib, sys\nfor m in {list(modules)!r}: importlib.import_module(m)\n"
        "print('\\n'.join(m for m in sys.modules if m == 'otaudit' or m.startswith('otaudit.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_store_imports_nothing_above_it() -> None:
    loaded = _loaded_by(STORE_MODULES)
    above = {m for m in loaded if m not in BELOW_THE_STORE and not m.startswith("otaudit.store")}
    assert not above, sorted(above)


def test_the_stored_tree_needs_no_store() -> None:
    """``tree`` reads nodes through a one-method protocol: the store builds on it."""
    loaded = _loaded_by(("otaudit.tree",))
    assert not {m for m in loaded if m.startswith("otaudit.store")}
