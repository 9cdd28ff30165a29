"""Completeness and conformance reports over the ledger (``otaudit gaps``, ``otaudit conformance``).

Completeness: every producer (one process of an instrumented application)
numbers its audit records 1, 2, 3 ... with ``audit.producer.seq`` under its
``audit.producer.id`` (``docs/conventions.md``). A number that never reached
the ledger is a lost record; a number held twice means the producer restarted
without a new id, or records were replayed. The store finds both with SQL
(``LAG`` over ``producer_seq`` per producer), streaming; only the ranges of
one producer are held in memory.

Conformance: per service, how many audit records lack a required field
(``missing`` column) or producer numbering.

Both read only derived columns, which ``otaudit verify`` rechecks against the
sealed bytes.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from operator import attrgetter
from typing import Any, Final

import orjson

from otaudit.store.base import ProducerStats, SeqBreak, ServiceConformance, Store
from otaudit.textsafety import spreadsheet_row, terminal_text

FORMATS: Final = ("table", "vertical", "csv", "json", "jsonl")
GAP_COLUMNS: Final = (
    "producer", "first_seq", "last_seq", "records",
    "missing_count", "missing", "duplicate_count", "duplicates",
)  # fmt: skip
CONFORMANCE_COLUMNS: Final = (
    "service", "records", "nonconforming", "missing_actor", "missing_result",
    "unnumbered", "conforming_pct",
)  # fmt: skip
NO_SERVICE: Final = "(no service.name)"

Range = tuple[int, int]


def format_ranges(ranges: Sequence[Range]) -> str:
    """``[(5, 7), (12, 12)]`` -> ``"5-7, 12"``."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


@dataclass(frozen=True)
class ProducerReport:
    """One producer's numbering: what arrived, what is missing, what is held twice."""

    producer: str
    first_seq: int
    last_seq: int
    records: int
    missing: list[Range]
    duplicates: list[Range]
    duplicate_count: int  # records beyond the first with an already seen number

    @property
    def missing_count(self) -> int:
        """How many numbers are missing."""
        return sum(b - a + 1 for a, b in self.missing)

    @property
    def complete(self) -> bool:
        """No number missing and none held twice."""
        return not self.missing and not self.duplicate_count

    def row(self) -> tuple[Any, ...]:
        """The values of ``GAP_COLUMNS``."""
        return (
            self.producer, self.first_seq, self.last_seq, self.records, self.missing_count,
            format_ranges(self.missing), self.duplicate_count, format_ranges(self.duplicates),
        )  # fmt: skip


def _report(stats: ProducerStats, breaks: Iterable[SeqBreak], from_one: bool) -> ProducerReport:
    missing: list[Range] = []
    if from_one and stats.first_seq > 1:
        missing.append((1, stats.first_seq - 1))
    repeated: list[Range] = []
    extra = 0
    for b in breaks:  # in number order
        if b.seq != b.previous:
            missing.append((b.previous + 1, b.seq - 1))
            continue
        extra += 1
        if repeated and b.seq <= repeated[-1][1] + 1:
            repeated[-1] = (repeated[-1][0], b.seq)
        else:
            repeated.append((b.seq, b.seq))
    return ProducerReport(
        stats.producer, stats.first_seq, stats.last_seq, stats.records, missing, repeated, extra
    )


def producer_reports(
    store: Store, *, since_ns: int | None = None, producer: str | None = None
) -> Iterator[ProducerReport]:
    """Each producer's numbering, ordered by producer id.

    Without ``since_ns`` numbering must start at 1, so numbers below the first
    one held are missing too; with it, only numbers between the first and the
    last one in the window are checked. Numbers after the last one held cannot
    be known to be missing until the producer sends again.
    """
    end = store.tree_size()  # both queries see the same records while the server appends
    breaks = store.producer_breaks(since_ns=since_ns, producer=producer, end=end)
    groups = itertools.groupby(breaks, key=attrgetter("producer"))
    group = next(groups, None)
    for stats in store.producer_stats(since_ns=since_ns, producer=producer, end=end):
        if group is not None and group[0] == stats.producer:
            yield _report(stats, group[1], since_ns is None)
            group = next(groups, None)
        else:
            yield _report(stats, (), since_ns is None)


@dataclass(frozen=True, slots=True)
class ServiceReport(ServiceConformance):
    """One service's conformance counts (as the store gives them), and what follows from them."""

    @property
    def conforming_pct(self) -> float:
        """Share of records with every required field, in percent, one decimal."""
        return round(100 * (self.records - self.nonconforming) / self.records, 1)

    def row(self) -> tuple[Any, ...]:
        """The values of ``CONFORMANCE_COLUMNS``."""
        return (
            self.service, self.records, self.nonconforming, self.missing_actor,
            self.missing_result, self.unnumbered, self.conforming_pct,
        )  # fmt: skip

    def _worst_first(self) -> tuple[float, float, str]:
        n = self.records
        return ((n - self.nonconforming) / n, -self.unnumbered / n, self.service or "")


def service_reports(store: Store, *, since_ns: int | None = None) -> list[ServiceReport]:
    """Per service conformance, worst first: lowest share conforming, then the highest
    share without producer numbering, then by name."""
    reports = [
        ServiceReport(**asdict(counts)) for counts in store.service_conformance(since_ns=since_ns)
    ]
    return sorted(reports, key=ServiceReport._worst_first)


# -- output --------------------------------------------------------------------


def to_json(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> str:
    """A JSON list of objects keyed by column name, in column order."""
    return orjson.dumps(
        [dict(zip(columns, row, strict=True)) for row in rows], option=orjson.OPT_INDENT_2
    ).decode()


def to_csv(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> str:
    """CSV with a header row, safe to open in a spreadsheet (``'`` before a cell that starts
    like a formula: :func:`otaudit.textsafety.spreadsheet_cell`); None is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([spreadsheet_row("" if v is None else v for v in row) for row in rows])
    return out.getvalue()


def to_table(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> str:
    """Plain aligned text: numbers right-aligned, text left-aligned, empty text as ``-``,
    control characters escaped (:func:`otaudit.textsafety.terminal_text`)."""
    cells = [[str(c) for c in columns]]
    cells += [["-" if v is None or v == "" else terminal_text(str(v)) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows)
               for i in range(len(columns))]  # fmt: skip
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for line in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(line, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def gaps_summary(reports: Sequence[ProducerReport]) -> str:
    """The last line of the table output of ``otaudit gaps``."""
    n = len(reports)
    numbered = sum(r.records for r in reports)
    gapped = [r for r in reports if r.missing]
    doubled = [r for r in reports if r.duplicate_count]
    if not gapped and not doubled:
        return f"OK: {n} producer(s), {numbered} numbered records, no missing or duplicated numbers"
    parts = []
    if gapped:
        missing = sum(r.missing_count for r in gapped)
        parts.append(f"{len(gapped)} of {n} producer(s) missing {missing} number(s)")
    if doubled:
        extra = sum(r.duplicate_count for r in doubled)
        parts.append(f"{len(doubled)} of {n} producer(s) with {extra} duplicated record(s)")
    return "GAPS: " + "; ".join(parts)


def conformance_summary(reports: Sequence[ServiceReport]) -> str:
    """The last line of the table output of ``otaudit conformance``."""
    total = sum(r.records for r in reports)
    if not total:
        return "no audit records"
    bad = sum(r.nonconforming for r in reports)
    unnumbered = sum(r.unnumbered for r in reports)
    pct = round(100 * (total - bad) / total, 1)
    return (
        f"all services: {total} audit records, {bad} non-conforming ({pct} % conforming), "
        f"{unnumbered} without producer numbering"
    )
