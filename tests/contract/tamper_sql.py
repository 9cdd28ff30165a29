"""Changing a ledger behind otaudit's back, in each database's own SQL.

Someone with the database's owner rights can switch off the append-only
triggers (SQLite: drop them; PostgreSQL: ``DISABLE TRIGGER USER``) and then
change anything. Each driver here does that its own way; the statements the
tamper cases run use ``?`` placeholders and the table names both databases
share, and where the databases differ (flattened attributes: JSON text on
SQLite, ``hstore`` on PostgreSQL) the driver writes the SQL.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

import psycopg

from otaudit.store.base import Store
from otaudit.store.postgres import PostgresStore
from otaudit.store.sqlite import SQLiteStore

#: The tables that hold the ledger (every one append-only).
LEDGER_TABLES = ("records", "resources", "tree_nodes", "checkpoints", "meta",
                 "schema_migrations")  # fmt: skip


class Tamperer(Protocol):
    """One database's way to change a ledger that the database itself guards."""

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run ``statement`` (``?`` placeholders) with every append-only trigger off."""
        ...

    def guarded(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run ``statement`` with the triggers on, as the database's owner."""
        ...

    def flat(self, pairs: dict[str, str]) -> str:
        """Flattened attributes as an SQL expression of the column's type."""
        ...

    def set_attribute(self, column: str, key: str, value: str) -> str:
        """An expression: ``column`` with attribute ``key`` set to ``value``."""
        ...

    def remove_attribute(self, column: str, key: str) -> str:
        """An expression: ``column`` without attribute ``key``."""
        ...


class SQLiteTamper:
    """Drops the triggers; flattened attributes are JSON text."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _run(self, statement: str, params: tuple[Any, ...], *, triggers: bool) -> list[Any]:
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            if not triggers:
                found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                for (name,) in found.fetchall():
                    conn.execute(f'DROP TRIGGER "{name}"')
            return conn.execute(statement, params).fetchall()

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """See :class:`Tamperer`."""
        return self._run(statement, params, triggers=False)

    def guarded(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """See :class:`Tamperer`."""
        return self._run(statement, params, triggers=True)

    def flat(self, pairs: dict[str, str]) -> str:
        """See :class:`Tamperer`."""
        return "'" + json.dumps(pairs, separators=(",", ":")).replace("'", "''") + "'"

    def set_attribute(self, column: str, key: str, value: str) -> str:
        """See :class:`Tamperer`."""
        return f"json_set({column}, '$.\"{key}\"', '{value}')"

    def remove_attribute(self, column: str, key: str) -> str:
        """See :class:`Tamperer`."""
        return f"json_remove({column}, '$.\"{key}\"')"


class PostgresTamper:
    """Disables the user triggers of every ledger table; flattened attributes are hstore."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _run(self, statement: str, params: tuple[Any, ...], *, triggers: bool) -> list[Any]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET search_path = otaudit")
            if not triggers:
                for table in LEDGER_TABLES:
                    conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            cur = conn.execute(statement.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """See :class:`Tamperer`."""
        return self._run(statement, params, triggers=False)

    def guarded(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """See :class:`Tamperer`."""
        return self._run(statement, params, triggers=True)

    def flat(self, pairs: dict[str, str]) -> str:
        """See :class:`Tamperer`."""
        text = ", ".join(f'"{k}"=>"{v}"' for k, v in pairs.items())
        return f"'{text}'::hstore"

    def set_attribute(self, column: str, key: str, value: str) -> str:
        """See :class:`Tamperer`."""
        return f"{column} || '{key}=>{value}'::hstore"

    def remove_attribute(self, column: str, key: str) -> str:
        """See :class:`Tamperer`."""
        return f"delete({column}, '{key}')"


def tamperer(store: Store) -> Tamperer:
    """The tamperer for the database ``store`` keeps its ledger in."""
    if isinstance(store, SQLiteStore):
        return SQLiteTamper(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresTamper(store.dsn)
