"""Formatting helpers shared by the benchmarks: markdown tables, percentiles, numbers."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table with columns padded to their widest cell."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def num(value: float, digits: int = 0) -> str:
    """A number with thousands separators (``n/a`` for NaN)."""
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio(value: float, base: float) -> str:
    """``value / base`` as a percentage."""
    if base <= 0 or math.isnan(value) or math.isnan(base):
        return "n/a"
    return f"{100 * value / base:.1f}%"


def timed(
    fn: Callable[..., Any], args: list[tuple[Any, ...]]
) -> tuple[list[float], list[float], list[Any]]:
    """Call ``fn(*a)`` for each ``a``: wall ms and thread CPU ms of each call, and the results.

    On a busy machine a call can be preempted for a whole scheduler slice (~4 ms); the
    CPU time excludes that, so wall >> CPU in the tail means noise, not work.
    """
    wall, cpu, out = [], [], []
    for a in args:
        c0, t0 = time.thread_time(), time.perf_counter()
        out.append(fn(*a))
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return wall, cpu, out


def progress(what: str, done: int, total: int, started: float) -> None:
    """Print ``what: done/total (rate/s)`` to stderr (rate since ``started``, perf_counter)."""
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"  {what}: {done:,}/{total:,} ({rate:,.0f}/s)", file=sys.stderr, flush=True)
