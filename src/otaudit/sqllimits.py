"""The bounds every run of user SQL stays inside, and the rows it hands back.

One table of limits for both stores (datasette keeps its settings the same
way): a statement may run for ``timeout_ms``, return at most ``max_rows``
rows and ``max_result_bytes`` bytes of cell data, build no single value
larger than ``max_value_bytes`` and, since it runs in a process of its own
(:mod:`otaudit.sqlworker`), use no more than ``max_memory_bytes``. A result
cut short by ``max_rows`` or ``max_result_bytes`` says which (``truncated``);
anything else over a limit is a :class:`~otaudit.errors.QueryError`.
"""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass
from typing import Any, Final

import orjson

from otaudit.errors import QueryError

#: Text of one statement; longer is refused before it reaches a database.
MAX_SQL_CHARS: Final = 100_000


@dataclass(frozen=True)
class QueryLimits:
    """How long one statement may run and how much it may return or use."""

    max_rows: int = 100_000
    max_result_bytes: int = 64 * 1024 * 1024
    timeout_ms: int = 30_000
    max_value_bytes: int = 32 * 1024 * 1024
    max_memory_bytes: int = 1024 * 1024 * 1024


def out_of_memory(limits: QueryLimits) -> QueryError:
    """The error of a statement that needed more memory than its worker may use."""
    return QueryError(f"query stopped: it needed more than {limits.max_memory_bytes // 2**20} MiB")


@dataclass(frozen=True)
class QueryRows:
    """What one statement returned: column names, rows, and the cap that cut it short
    (``"rows"`` or ``"bytes"``), if one did."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: str | None = None


def cell_bytes(value: Any) -> int:
    """What one cell counts against ``max_result_bytes``: about its size once encoded as
    JSON (text as escaped UTF-8, bytes as base64), else 8."""
    if isinstance(value, str):
        return len(orjson.dumps(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return 4 * ((len(value) + 2) // 3) + 2
    if isinstance(value, list | tuple):
        return 8 + sum(cell_bytes(v) for v in value)
    if isinstance(value, dict):
        return 8 + sum(cell_bytes(k) + cell_bytes(v) for k, v in value.items())
    if isinstance(value, decimal.Decimal | datetime.timedelta):
        return len(str(value))
    return 8


class RowBudget:
    """Counts rows and bytes as they are fetched; says when the next row would not fit."""

    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self.rows: list[tuple[Any, ...]] = []
        self.bytes = 0
        self.truncated: str | None = None

    def take(self, row: tuple[Any, ...]) -> bool:
        """Keep ``row`` if it fits; False (and ``truncated`` set) once a cap is reached."""
        if len(self.rows) >= self.limits.max_rows:
            self.truncated = "rows"
            return False
        size = sum(cell_bytes(v) for v in row)
        if self.bytes + size > self.limits.max_result_bytes:
            self.truncated = "bytes"
            return False
        self.rows.append(row)
        self.bytes += size
        return True

    def result(self, columns: list[str]) -> QueryRows:
        """The rows kept; QueryError if not even the first row fitted."""
        if self.truncated == "bytes" and not self.rows:
            raise QueryError(
                f"the first row is over the {self.limits.max_result_bytes}-byte result limit:"
                " select fewer or shorter columns"
            )
        return QueryRows(columns, self.rows, self.truncated)
