"""Versioned schema migrations, shared by every store.

Each store lists its migrations in order; a ledger records the versions
applied to it (``schema_migrations``). ``otaudit migrate`` applies whatever
is pending; ``otaudit serve`` applies pending migrations on start only when
all of them are ``online`` (additive: new tables, indexes, views, grants),
so that other nodes and readers keep working while they run (a new, empty
ledger gets every migration). Read-only
commands never migrate: they need a ledger at exactly the current version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from otaudit.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its version number, what it does, its SQL script."""

    version: int
    description: str
    script: str
    online: bool = True


def pending(current: int, migrations: Sequence[Migration], where: str) -> list[Migration]:
    """The migrations after ``current``; ConfigError if the ledger is newer than this code."""
    latest = migrations[-1].version
    if current > latest:
        raise ConfigError(
            f"{where}: ledger schema version {current} is newer than this otaudit "
            f"understands ({latest}); upgrade otaudit"
        )
    return [m for m in migrations if m.version > current]


def require_current(current: int, migrations: Sequence[Migration], where: str) -> None:
    """ConfigError unless the ledger is at the latest version."""
    if pending(current, migrations, where):
        raise ConfigError(
            f"{where}: ledger schema version {current}, this otaudit needs "
            f"{migrations[-1].version}: run `otaudit migrate`"
        )


def check_online(todo: Sequence[Migration], where: str, current: int) -> None:
    """ConfigError if any of ``todo`` must not run while the ledger is in use.

    A new ledger (``current`` 0) is in nobody's use yet: everything may run.
    """
    offline = [m for m in todo if not m.online] if current > 0 else []
    if offline:
        names = ", ".join(f"{m.version} ({m.description})" for m in offline)
        raise ConfigError(
            f"{where}: migration {names} must run with every otaudit process stopped: "
            "stop them and run `otaudit migrate`"
        )
