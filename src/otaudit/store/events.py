"""The reads of detection, written once for every store.

Rules see records through ``otaudit.detect.event.Event``, built from the
stored columns named in :data:`EVENT_COLUMNS` (all derived from the sealed
bytes, all checked by ``verify``); alerts and their triage are records too,
found by their action.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from otaudit.conventions import OWN_PIPELINE
from otaudit.store.driver import OverDriver

#: The columns an event carries, in the order ``Store.detect_rows`` yields them.
EVENT_COLUMNS: Final = (
    "seq", "time_unix_nano", "received_at", "pipeline", "signal", "service", "name", "actor",
    "actor_role", "client_address", "action", "target", "resource_type", "result", "producer",
    "attributes",
)  # fmt: skip


class EventReads(OverDriver):
    """``detect_rows``, ``first_seq_at`` and ``action_rows``; mixed into each store."""

    def detect_rows(self, begin: int, end: int | None = None) -> Iterator[tuple[Any, ...]]:
        """Rows of ``EVENT_COLUMNS`` with ``begin <= seq < end``, in sequence order."""
        ph = self._db.placeholder
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {self._records} WHERE seq >= {ph}"
        params: list[Any] = [begin]
        if end is not None:
            sql += f" AND seq < {ph}"
            params.append(end)
        yield from self._db.stream("reading records for detection", sql + " ORDER BY seq", params)

    def first_seq_at(self, time_ns: int) -> int | None:
        """The smallest seq of a record with ``time_unix_nano >= time_ns`` (None: no such)."""
        ph = self._db.placeholder
        sql = f"SELECT MIN(seq) FROM {self._records} WHERE time_unix_nano >= {ph}"
        for (seq,) in self._db.stream("finding where to start", sql, [time_ns]):
            return None if seq is None else int(seq)
        return None

    def action_rows(
        self, actions: Sequence[str], *, since_ns: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """(seq, time_unix_nano, actor, target, attributes) of otaudit's own records (pipeline
        ``OWN_PIPELINE``) with one of ``actions`` (and ``time_unix_nano >= since_ns``), by seq."""
        ph = self._db.placeholder
        sql = (
            f"SELECT seq, time_unix_nano, actor, target, attributes FROM {self._records} "
            f"WHERE action IN ({', '.join([ph] * len(actions))}) AND pipeline = {ph}"
        )
        params: list[Any] = [*actions, OWN_PIPELINE]
        if since_ns is not None:
            sql += f" AND time_unix_nano >= {ph}"
            params.append(since_ns)
        yield from self._db.stream("reading alerts", sql + " ORDER BY seq", params)
