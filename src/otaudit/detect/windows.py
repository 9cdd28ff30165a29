"""Rules over windows of record time: ``threshold`` and ``sequence``."""

from __future__ import annotations

import bisect
from typing import Any

from otaudit.detect.bounds import (
    ITEM_BYTES,
    OBJECT_BYTES,
    Bounds,
    GroupTable,
    kept_value,
    text_bytes,
)
from otaudit.detect.event import Event
from otaudit.detect.rules import LATE_NS, Rule
from otaudit.detect.state import Finding, GroupKey, RuleState


class Window:
    """A group's matching records ordered by time: (time, seq, value), for counting any
    time range whatever order the records arrived in; ``nbytes`` estimates its size."""

    __slots__ = ("closed_seq", "items", "last_received", "nbytes", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.items: list[tuple[int, Any]] = []  # (seq, value), in the order of ``times``
        self.closed_seq = -1  # sequence rules: the last record that ended a run
        self.last_received = 0
        self.nbytes = 3 * OBJECT_BYTES

    def add(self, time: int, seq: int, value: Any, bounds: Bounds) -> None:
        """Keep a record, in time order; past the group's bounds, forget the oldest."""
        at = bisect.bisect_right(self.times, time)
        self.times.insert(at, time)
        self.items.insert(at, (seq, value))
        self.nbytes += ITEM_BYTES + text_bytes(value)
        while len(self.times) > 1 and (
            len(self.times) > bounds.max_group_records or self.nbytes > bounds.max_group_bytes
        ):
            del self.times[0]
            _, oldest = self.items.pop(0)
            self.nbytes -= ITEM_BYTES + text_bytes(oldest)

    def between(self, start: int, end: int) -> list[tuple[int, Any]]:
        """The (seq, value) of the records with ``start <= time <= end``."""
        times = self.times
        return self.items[bisect.bisect_left(times, start) : bisect.bisect_right(times, end)]

    def forget_before(self, time: int) -> None:
        """Drop the records older than ``time``."""
        at = bisect.bisect_left(self.times, time)
        if at:
            self.nbytes -= sum(ITEM_BYTES + text_bytes(v) for _, v in self.items[:at])
            del self.times[:at]
            del self.items[:at]


def _worth(window: Window) -> tuple[int, int]:
    """Groups with fewer records, then those heard from least lately, are forgotten first."""
    return len(window.times), window.last_received


class WindowedRule(RuleState):
    """A rule counting each group's matching records within ``window`` of record time.

    Records are kept ``LATE`` beyond the window (counted back from the group's newest
    record), so one that arrives out of order by up to that much still meets the records
    of its window. The groups are bounded (:mod:`~otaudit.detect.bounds`): past a bound,
    those with the fewest records are forgotten first."""

    def __init__(self, rule: Rule, bounds: Bounds) -> None:
        super().__init__(rule, bounds)
        self.groups: GroupTable[GroupKey, Window] = GroupTable(rule.name, bounds, _worth)

    @property
    def evicted(self) -> int:
        """Groups forgotten so far to stay within the bounds."""
        return self.groups.evicted

    def window(self, key: GroupKey, e: Event) -> Window:
        """The group's window, with what is too old for any window forgotten."""
        window = self.groups.get(key)
        if window is None:
            window = self.groups.add(key, Window())
        elif window.times:
            before = window.nbytes
            window.forget_before(max(window.times[-1], e.time) - self.rule.window_ns - LATE_NS)
            self.groups.nbytes += window.nbytes - before
        return window

    def keep(self, key: GroupKey, window: Window, e: Event, value: Any) -> None:
        """Add the record to the group's window, and keep the rule within its bounds."""
        before = window.nbytes
        window.add(e.time, e.seq, value, self.bounds)
        self.groups.nbytes += window.nbytes - before
        self.forgotten(self.groups.fit(protect=key))

    def forgotten(self, keys: list[GroupKey]) -> None:
        """Called with the groups forgotten to stay within the bounds."""

    def prune(self, clock: int) -> None:
        """Forget the groups no record reached lately, at receive time ``clock``."""
        # By receive time: a group none of whose records arrived lately is done with.
        horizon = clock - self.rule.window_ns - LATE_NS
        self.groups.keep_only(lambda k, w: w.last_received >= horizon)


class ThresholdRule(WindowedRule):
    """At least ``threshold`` matching records (or distinct values) in a group within
    ``window`` before a record: an alert at that record, at most one per group in each
    period of ``window`` (counted from the epoch), so that a steady attack raises one alert
    per period and which records raise them does not depend on where reading began."""

    def __init__(self, rule: Rule, bounds: Bounds) -> None:
        super().__init__(rule, bounds)
        self.distinct = rule.distinct
        self.fired: dict[GroupKey, set[int]] = {}

    def forgotten(self, keys: list[GroupKey]) -> None:
        """Drop the bookkeeping of groups the bounds forgot."""
        for key in keys:
            self.fired.pop(key, None)

    def feed(self, e: Event, out: list[Finding]) -> None:
        """Judge one event; append what it finds to ``out``."""
        key = self.group_of(e)
        if key is None:
            return
        value = e.get(self.distinct) if self.distinct else None
        if self.distinct and value is None:
            return
        window = self.window(key, e)
        window.last_received = e.received
        self.keep(key, window, e, kept_value(value))
        period = e.time // self.rule.window_ns
        fired = self.fired.get(key)
        if fired is not None and period in fired:
            return
        inside = window.between(e.time - self.rule.window_ns, e.time)
        count = _distinct(inside, self.rule.threshold) if self.distinct else len(inside)
        if count >= self.rule.threshold:
            if fired is None:
                fired = self.fired[key] = set()
            fired.add(period)
            out.append(self.finding(e, key, count, (seq for seq, _ in inside)))

    def prune(self, clock: int) -> None:
        """Forget the groups no record reached lately, at receive time ``clock``."""
        super().prune(clock)
        oldest = (clock - self.rule.window_ns - LATE_NS) // self.rule.window_ns - 1
        kept: dict[GroupKey, set[int]] = {}
        for key, periods in self.fired.items():
            recent = {p for p in periods if p >= oldest}
            if recent:
                kept[key] = recent
        self.fired = kept


def _distinct(inside: list[tuple[int, Any]], enough: int) -> int:
    """The number of distinct values, counting no further than ``enough``."""
    seen: set[Any] = set()
    for _, value in inside:
        seen.add(value)
        if len(seen) >= enough:
            break
    return len(seen)


class SequenceRule(WindowedRule):
    """At least ``threshold`` records matching ``where`` in a group within ``window`` before
    a record matching ``then``; a ``then`` record ends the run either way."""

    def __init__(self, rule: Rule, bounds: Bounds) -> None:
        super().__init__(rule, bounds)
        assert rule.then is not None
        self.then = rule.then

    def feed(self, e: Event, out: list[Finding]) -> None:
        """Judge one event; append what it finds to ``out``."""
        closing = self.then(e)
        if not closing and not self.where(e):
            return
        key = self.key(e)
        if None in key or (closing and key not in self.groups):
            return  # a ``then`` record with no run before it has nothing to end
        window = self.window(key, e)
        window.last_received = e.received
        if not closing:
            self.keep(key, window, e, None)
            return
        run = [seq for seq, _ in window.between(e.time - self.rule.window_ns, e.time)
               if seq > window.closed_seq]  # fmt: skip
        window.closed_seq = e.seq
        if len(run) >= self.rule.threshold:
            out.append(self.finding(e, key, len(run), [*run, e.seq]))
