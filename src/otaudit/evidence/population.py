"""A control's population: streamed from the store into its files, counted, and sampled.

The population is read once, in seq order, and written to ``population.csv`` and
``population.jsonl`` as it arrives; what the report needs (rows per day, per action, per
result, failures) is counted on the way, and the sample is drawn on the way too: the
records with the smallest draw keys (:func:`otaudit.auditsample.sample_key` under the
closing checkpoint's root hash) are kept in a heap of the sample's size. Memory is that of
the sample, whatever the population's size.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from otaudit.auditsample import sample_key
from otaudit.evidence.files import PackWriter, TableFiles
from otaudit.evidence.rows import Rows

#: Results that count as failures in a control's figures.
FAILURE: Final = re.compile(
    r"(?i)^(fail|failed|failure|denied|deny|error|rejected|refused|forbidden|unauthori[sz]ed"
    r"|invalid|blocked)$"
)
#: Auditors' usual sample sizes by how often a control operates (the lower bounds of the
#: ranges in common use: annual 1, quarterly 2, monthly 2-5, weekly 5-15, daily 20-40,
#: several times a day 25-60), and the rate (occurrences per day) from which each applies.
SAMPLE_SIZES: Final = (
    (2.0, 25, "several times a day"),
    (0.7, 20, "daily"),
    (0.1, 5, "weekly"),
    (0.023, 2, "monthly"),
    (0.0077, 2, "quarterly"),
    (0.0, 1, "annually"),
)
_NS_PER_DAY: Final = 86_400 * 10**9


def period_days(from_ns: int, to_ns: int) -> list[str]:
    """Every UTC day ``[from_ns, to_ns)`` touches, as ``YYYY-MM-DD``."""
    day = datetime.fromtimestamp(from_ns // 10**9, UTC).date()
    last = datetime.fromtimestamp((to_ns - 1) // 10**9, UTC).date()
    days = []
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def day_of(time_ns: int) -> str:
    """The UTC day of ``time_ns``."""
    return datetime.fromtimestamp(time_ns // 10**9, UTC).date().isoformat()


def sample_size(rows: int, days: float, given: int | None) -> tuple[int, str]:
    """The sample's size and why: ``given`` (``--sample-size``), else by the population's
    frequency over the period; never more than the population."""
    if given is not None:
        return min(given, rows), f"--sample-size {given}"
    if rows == 0:
        return 0, "empty population"
    rate = rows / max(days, 1.0)
    for floor, size, frequency in SAMPLE_SIZES:
        if rate >= floor:
            whole = "; the whole population" if rows <= size else ""
            return min(size, rows), f"{frequency}, {rate:.3g} a day{whole}"
    raise AssertionError("unreachable")


@dataclass
class Population:
    """What streaming one population found."""

    columns: list[str]
    rows: int = 0
    failures: int = 0
    per_day: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)
    by_result: Counter[str] = field(default_factory=Counter)
    #: The sample, in draw order: (seq, row).
    sample: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)


def write_population(
    writer: PackWriter, folder: str, rows: Rows, root_hash: bytes, size: int | None, days: float
) -> tuple[Population, int, str]:
    """Stream ``rows`` into ``folder``'s population files; the figures, and the sample drawn
    with ``size`` (None: by frequency) under ``root_hash`` with its size and basis."""
    columns = rows.columns
    found = Population(columns)
    at = {name: i for i, name in enumerate(columns)}
    seq_i, time_i = at["seq"], at["time_unix_nano"]
    action_i, result_i = at["action"], at["result"]
    files = TableFiles(writer, f"{folder}/population", columns)
    # The keys of the records drawn so far, largest first (negated), up to the largest size
    # the sample may need: the size is known only once the population has been counted.
    cap = size if size is not None else max(s for _, s, _ in SAMPLE_SIZES)
    heap: list[tuple[int, int, tuple[Any, ...]]] = []
    per_day, by_action, by_result = found.per_day, found.by_action, found.by_result
    for row in rows:
        files.add(row)
        seq = int(row[seq_i])
        per_day[day_of(int(row[time_i]))] += 1
        by_action[str(row[action_i] or "")] += 1
        result = str(row[result_i] or "")
        by_result[result] += 1
        if result and FAILURE.match(result):
            found.failures += 1
        if cap:
            key = -int.from_bytes(sample_key(root_hash, seq))  # a max-heap of the keys
            if len(heap) < cap:
                heapq.heappush(heap, (key, seq, row))
            elif key > heap[0][0]:
                heapq.heapreplace(heap, (key, seq, row))
    found.rows = files.close()
    n, basis = sample_size(found.rows, days, size)
    drawn = sorted(heap, key=lambda item: item[0], reverse=True)[:n]
    found.sample = [(seq, row) for _, seq, row in drawn]
    return found, n, basis


def write_sample(writer: PackWriter, folder: str, found: Population) -> None:
    """The sample's rows, in draw order, as ``sample.csv`` and ``sample.jsonl``."""
    files = TableFiles(writer, f"{folder}/sample", found.columns)
    files.add_all(row for _, row in found.sample)
    files.close()


def top(counts: Counter[str], n: int = 25) -> dict[str, int]:
    """The ``n`` largest counts, then the rest summed as ``(others)``."""
    common = counts.most_common(n)
    out = {key or "(none)": value for key, value in common}
    rest = sum(counts.values()) - sum(v for _, v in common)
    if rest:
        out["(others)"] = rest
    return out


def zero_filled(counts: Counter[str], days: Sequence[str]) -> dict[str, int]:
    """Counts per day for every day of the period, zeros included."""
    return {day: counts.get(day, 0) for day in days}
