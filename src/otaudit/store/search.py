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


#: The orders a browse can take: the SQL of each sort key (seq breaks ties). ``timestamp``
#: sorts by the indexed ``time_unix_nano``; text keys sort NULL as the empty string.
SORT_KEYS: Final = {
    "seq": "seq",
    "timestamp": "time_unix_nano",
    "action": "COALESCE(action, '')",
    "actor": "COALESCE(actor, '')",
}
#: The longest name substring a browse looks for.
MAX_NAME_CONTAINS: Final = 200
#: A browse in seq order filtered by action reads the matches through the action index
#: and sorts them only when the view's time window holds fewer than this many of them
#: (counted in that index, at most this many entries read). Past it, it walks the records
#: in seq order from the cursor instead, testing each: with matches at least this dense, a
#: page of 500 is found within about ``window / DENSE_MATCHES * 500`` rows (with 1,000,000
#: records in the window, 50,000), where sorting every match would read and sort them all.
DENSE_MATCHES: Final = 10_000
#: The filters no index serves: a page in seq order with one of them scans the ledger in
#: bounded stretches (``seq_window``) rather than all of it at once, so that a rare or
#: absent value costs each page a bounded time; the page says how far it looked.
SCANNED_FILTERS: Final = ("actor", "target", "resource_type", "result", "service", "trace_id")
#: A browse sorted by a text column (action, actor) sorts every record of its window (no
#: index keeps them in that order: one would cost every append); it is offered when the
#: window holds at most this many records (counted in the time index, at most this many
#: entries read).
SORTABLE_WINDOW: Final = 10_000


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern with ``ESCAPE '!'``."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


@dataclass(frozen=True)
class BrowseOrder:
    """How a browse (the console's Records page) narrows and orders a search: the
    signals, a case-insensitive substring of the name, the sort key and its direction."""

    sort: str = "seq"
    descending: bool = True
    signals: tuple[str, ...] = ()
    name_contains: str | None = None

    def __post_init__(self) -> None:
        if self.sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, got {self.sort!r}")
        if self.name_contains is not None and len(self.name_contains) > MAX_NAME_CONTAINS:
            raise ValueError(f"the name filter is over {MAX_NAME_CONTAINS} characters")


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

    def browse(
        self,
        where: SearchFilter,
        page: BrowseOrder,
        *,
        after_seq: int | None = None,
        limit: int | None = None,
        seq_window: tuple[int, int] | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``SEARCH_COLUMNS`` matching ``where`` in ``page``'s order (the sort key,
        then seq), from just past the record ``after_seq`` (keyset paging: the key of that
        record is read again by its seq, so a cursor carries only a sequence number), and
        only with ``first <= seq < end`` when ``seq_window`` is ``(first, end)`` (a page that
        scans a bounded stretch of the ledger, see :data:`SCANNED_FILTERS`)."""
        columns = ", ".join('"timestamp"' if c == "timestamp" else c for c in SEARCH_COLUMNS)
        walk = (page.sort == "seq" and bool(where.values.get("action")) and self._dense(where)) or (
            page.sort == "actor" and self._dense(where)
        )
        # One lower bound on seq: given two, the planner may range over the looser one.
        condition, params = self._where(where, -1 if seq_window is None else seq_window[0] - 1,
                                        walk)  # fmt: skip
        key = SORT_KEYS[page.sort]
        way = "DESC" if page.descending else "ASC"
        ph = self._db.placeholder
        if seq_window is not None:
            condition += f" AND seq < {ph}"
            params.append(seq_window[1])
        if page.signals:
            condition += f" AND signal IN ({', '.join([ph] * len(page.signals))})"
            params.extend(page.signals)
        if page.name_contains:
            condition += f" AND LOWER(name) LIKE {ph} ESCAPE '!'"
            params.append(f"%{like_escape(page.name_contains.lower())}%")
        if after_seq is not None:
            past = "<" if page.descending else ">"
            if page.sort == "seq":
                condition += f" AND seq {past} {ph}"
                params.append(after_seq)
            else:
                # (key, seq) past the cursor's, written so that an index on (key, seq)
                # starts at the cursor rather than at its first entry.
                cursor_key = f"(SELECT {key} FROM {self._records} WHERE seq = {ph})"
                condition += (f" AND {key} {past}= {cursor_key}"
                              f" AND ({key} {past} {cursor_key} OR seq {past} {ph})")  # fmt: skip
                params.extend([after_seq, after_seq, after_seq])
        order = "seq" if page.sort == "seq" else f"{key} {way}, seq"
        sql = f"SELECT {columns} FROM {self._records} WHERE {condition} ORDER BY {order} {way}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        yield from self._db.stream("browsing records", sql, params)

    def count(self, where: SearchFilter) -> int:
        """How many records match ``where``."""
        condition, params = self._where(where, -1)
        sql = f"SELECT COUNT(*) FROM {self._records} WHERE {condition}"
        return int(next(iter(self._db.stream("counting records", sql, params)))[0])

    def window_holds_at_most(self, where: SearchFilter, limit: int) -> bool:
        """Whether the time window of ``where`` holds at most ``limit`` records (counted in
        the time index, at most ``limit + 1`` entries read)."""
        return not self._dense(SearchFilter({}, where.since_ns, where.until_ns), limit + 1)

    def _dense(self, where: SearchFilter, enough: int | None = None) -> bool:
        """Whether the action filter of ``where`` (without one: its time window) matches at
        least ``DENSE_MATCHES`` records (an index-only count that stops there)."""
        ph = self._db.placeholder
        actions = where.values.get("action", ())
        sql = f"action IN ({', '.join([ph] * len(actions))})" if actions else "seq >= 0"
        params: list[Any] = list(actions)
        if where.since_ns is not None:
            sql += f" AND time_unix_nano >= {ph}"
            params.append(where.since_ns)
        if where.until_ns is not None:
            sql += f" AND time_unix_nano < {ph}"
            params.append(where.until_ns)
        enough = DENSE_MATCHES if enough is None else enough
        count = (f"SELECT COUNT(*) FROM (SELECT 1 FROM {self._records} WHERE {sql}"
                 f" LIMIT {int(enough)}) AS matches")  # fmt: skip
        return int(next(iter(self._db.stream("counting records", count, params)))[0]) >= enough

    def _where(
        self, where: SearchFilter, after_seq: int, walk: bool = False
    ) -> tuple[str, list[Any]]:
        """The condition of ``where``; ``walk``: written so that no index on ``action``
        or the time serves it (``action || ''``, ``time_unix_nano + 0``), leaving the
        records' seq order to the planner (the dense filters of :data:`DENSE_MATCHES`)."""
        ph = self._db.placeholder
        sql = f"seq > {ph}"
        params: list[Any] = [after_seq]
        for name in EXACT_FILTERS:
            values = where.values.get(name, ())
            if values:
                column = f"{name} || ''" if walk and name == "action" else name
                sql += f" AND {column} IN ({', '.join([ph] * len(values))})"
                params.extend(values)
        if where.seqs is not None:
            sql += f" AND seq IN ({', '.join(str(int(s)) for s in where.seqs) or 'NULL'})"
        time = "time_unix_nano + 0" if walk else "time_unix_nano"
        if where.since_ns is not None:
            sql += f" AND {time} >= {ph}"
            params.append(where.since_ns)
        if where.until_ns is not None:
            sql += f" AND {time} < {ph}"
            params.append(where.until_ns)
        return sql, params
