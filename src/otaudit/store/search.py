"""``search``: audit records by their typed columns, streamed in sequence order.

Written once for every store (like :mod:`otaudit.store.reports`): both run
the same SQL over their ``records`` table, reading its text ``timestamp``,
so a search prints the same bytes on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from otaudit.store.driver import OverDriver

#: The columns of a search result, in this order on every store and in every format.
SEARCH_COLUMNS: Final = (
    "seq", "timestamp", "signal", "service", "actor", "actor_role", "client_address",
    "action", "target", "resource_type", "result", "name", "trace_id", "span_id",
)  # fmt: skip
#: The filters that match a column exactly (any of the given values).
EXACT_FILTERS: Final = ("action", "actor", "target", "resource_type", "result", "service",
                        "trace_id")  # fmt: skip


@dataclass(frozen=True)
class SearchFilter:
    """What to find: each given column equal to one of its values, and a time window."""

    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    since_ns: int | None = None
    until_ns: int | None = None
    seqs: tuple[int, ...] | None = None  # only these sequence numbers

    def describe(self) -> str:
        """The filter as command-line options, in a stable order (for the read record)."""
        parts = [
            f"--{name.replace('_', '-')} {value}"
            for name in EXACT_FILTERS
            for value in self.values.get(name, ())
        ]
        if self.since_ns is not None:
            parts.append(f"--since-ns {self.since_ns}")
        if self.until_ns is not None:
            parts.append(f"--until-ns {self.until_ns}")
        return " ".join(parts)


class SearchReads(OverDriver):
    """The ``search`` read; a store mixes it in next to ``ReportReads``."""

    def search(
        self, where: SearchFilter, *, after_seq: int = -1, limit: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``SEARCH_COLUMNS`` with ``seq > after_seq`` matching ``where``, by seq."""
        columns = ", ".join('"timestamp"' if c == "timestamp" else c for c in SEARCH_COLUMNS)
        condition, params = self._where(where, after_seq)
        sql = f"SELECT {columns} FROM {self._records} WHERE {condition} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        yield from self._db.stream("searching records", sql, params)

    def count(self, where: SearchFilter) -> int:
        """How many records match ``where``."""
        condition, params = self._where(where, -1)
        sql = f"SELECT COUNT(*) FROM {self._records} WHERE {condition}"
        return int(next(iter(self._db.stream("counting records", sql, params)))[0])

    def _where(self, where: SearchFilter, after_seq: int) -> tuple[str, list[Any]]:
        ph = self._db.placeholder
        sql = f"seq > {ph}"
        params: list[Any] = [after_seq]
        for name in EXACT_FILTERS:
            values = where.values.get(name, ())
            if values:
                sql += f" AND {name} IN ({', '.join([ph] * len(values))})"
                params.extend(values)
        if where.seqs is not None:
            sql += f" AND seq IN ({', '.join(str(int(s)) for s in where.seqs) or 'NULL'})"
        if where.since_ns is not None:
            sql += f" AND time_unix_nano >= {ph}"
            params.append(where.since_ns)
        if where.until_ns is not None:
            sql += f" AND time_unix_nano < {ph}"
            params.append(where.until_ns)
        return sql, params
