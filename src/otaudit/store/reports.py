"""The selection and completeness reads, written once for every store.

Both stores run the same SQL over their ``records`` table; only the
placeholder style and the ordering of text (byte order, so that producers
and services sort the same everywhere) differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from otaudit.conventions import OWN_PIPELINE
from otaudit.store.base import ProducerStats, SeqBreak, ServiceConformance
from otaudit.store.driver import OverDriver

Params = list[Any]


class ReportReads(OverDriver):
    """``select_seqs``, ``producer_stats``, ``producer_breaks`` and ``service_conformance``.

    Mixed into :class:`otaudit.store.sql.SQLStore`; the driver gives the table
    name, the placeholder and the collation clause for byte-ordered text.
    """

    def select_seqs(
        self, *, since_ns: int | None, until_ns: int | None, actions: Sequence[str], end: int
    ) -> Iterator[int]:
        """Seqs ``< end`` selected by ``time_unix_nano`` and ``action``; see ``Store``."""
        ph = self._db.placeholder
        sql = f"SELECT seq FROM {self._records} WHERE seq < {ph}"
        params: Params = [end]
        if since_ns is not None:
            sql += f" AND time_unix_nano >= {ph}"
            params.append(since_ns)
        if until_ns is not None:
            sql += f" AND time_unix_nano < {ph}"
            params.append(until_ns)
        if actions:
            sql += f" AND action IN ({', '.join([ph] * len(actions))})"
            params.extend(actions)
        for r in self._db.stream("selecting records", sql + " ORDER BY seq", params):
            yield int(r[0])

    def _numbered(
        self, since_ns: int | None, producer: str | None, end: int | None
    ) -> tuple[str, Params]:
        ph = self._db.placeholder
        where = "producer IS NOT NULL AND producer_seq IS NOT NULL"
        params: Params = []
        for clause, value in (
            (f" AND seq < {ph}", end),
            (f" AND producer = {ph}", producer),
            (f" AND time_unix_nano >= {ph}", since_ns),
        ):
            if value is not None:
                where += clause
                params.append(value)
        return where, params

    def producer_stats(
        self, *, since_ns: int | None = None, producer: str | None = None, end: int | None = None
    ) -> Iterator[ProducerStats]:
        """Per producer numbering statistics; see ``Store``."""
        where, params = self._numbered(since_ns, producer, end)
        sql = (
            "SELECT producer, MIN(producer_seq), MAX(producer_seq), COUNT(*)"
            f" FROM {self._records} WHERE {where}"
            f" GROUP BY producer ORDER BY producer {self._db.byte_order}"
        )
        for r in self._db.stream("reading producer numbering", sql, params):
            yield ProducerStats(str(r[0]), int(r[1]), int(r[2]), int(r[3]))

    def producer_breaks(
        self, *, since_ns: int | None = None, producer: str | None = None, end: int | None = None
    ) -> Iterator[SeqBreak]:
        """Missing and repeated numbers per producer (window function LAG); see ``Store``."""
        where, params = self._numbered(since_ns, producer, end)
        sql = (
            "SELECT producer, previous, producer_seq FROM ("
            " SELECT producer, producer_seq, LAG(producer_seq)"
            "  OVER (PARTITION BY producer ORDER BY producer_seq) AS previous"
            f" FROM {self._records} WHERE {where}) AS numbered"
            " WHERE previous IS NOT NULL AND producer_seq <> previous + 1"
            f" ORDER BY producer {self._db.byte_order}, producer_seq"
        )
        for r in self._db.stream("reading producer numbering", sql, params):
            yield SeqBreak(str(r[0]), int(r[1]), int(r[2]))

    def service_conformance(self, *, since_ns: int | None = None) -> Iterator[ServiceConformance]:
        """Per service conformance counts; see ``Store``."""
        # '%' is doubled where the placeholder style is %s (psycopg), single otherwise.
        pct = "%%" if self._db.placeholder == "%s" else "%"
        lacks = (
            "SUM(CASE WHEN ',' || COALESCE(missing, '') || ',' LIKE "
            f"'{pct},{{}},{pct}' THEN 1 ELSE 0 END)"
        )
        sql = (
            f"SELECT service, COUNT(*), COUNT(missing), {lacks.format('actor')},"
            f" {lacks.format('result')},"
            " SUM(CASE WHEN producer IS NULL OR producer_seq IS NULL THEN 1 ELSE 0 END)"
            f" FROM {self._records}"
        )
        # otaudit's own records (pipeline OWN_PIPELINE, which ingest refuses to clients)
        # are not an instrumented service's records.
        sql += f" WHERE pipeline <> {self._db.placeholder}"
        params: Params = [OWN_PIPELINE]
        if since_ns is not None:
            sql += f" AND time_unix_nano >= {self._db.placeholder}"
            params.append(since_ns)
        sql += f" GROUP BY service ORDER BY service {self._db.byte_order} NULLS FIRST"
        for r in self._db.stream("reading conformance", sql, params):
            yield ServiceConformance(None if r[0] is None else str(r[0]), *(int(v) for v in r[1:]))
