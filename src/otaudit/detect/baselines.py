"""Rules over long memories: ``new_value`` (baselines) and ``silence`` (receive time)."""

from __future__ import annotations

import heapq
from typing import Any

from otaudit.detect.bounds import (
    COUNT_BYTES,
    DEFAULT_BOUNDS,
    ITEM_BYTES,
    OBJECT_BYTES,
    Bounds,
    GroupTable,
    kept_value,
    key_bytes,
    text_bytes,
)
from otaudit.detect.event import FIELDS, Event
from otaudit.detect.rules import LATE_NS, Rule
from otaudit.detect.state import Finding, GroupKey, RuleState


class History:
    """One group's values with when each was last seen, and the group's first and last;
    ``nbytes`` estimates its size."""

    __slots__ = ("first", "last", "nbytes", "values")

    def __init__(self, time: int) -> None:
        self.first = time
        self.last = time
        self.values: dict[Any, int] = {}
        self.nbytes = 3 * OBJECT_BYTES

    def remember(self, value: Any, time: int, bounds: Bounds) -> None:
        """Note that ``value`` was seen at ``time``; past the group's bounds, forget the
        values seen longest ago (down to three quarters of the bound)."""
        if value not in self.values:
            self.nbytes += ITEM_BYTES + text_bytes(value)
        self.values[value] = time
        if len(self.values) > bounds.max_group_records or self.nbytes > bounds.max_group_bytes:
            newest = sorted(self.values.items(), key=lambda item: item[1], reverse=True)
            most_values = bounds.max_group_records * 3 // 4
            most_bytes = bounds.max_group_bytes * 3 // 4
            kept: dict[Any, int] = {}
            size = 3 * OBJECT_BYTES
            for known, seen in newest:
                cost = ITEM_BYTES + text_bytes(known)
                if len(kept) >= most_values or size + cost > most_bytes:
                    break
                kept[known] = seen
                size += cost
            self.values, self.nbytes = kept, size

    def keep_since(self, horizon: int) -> None:
        """Forget the values last seen before ``horizon``."""
        self.values = {v: t for v, t in self.values.items() if t >= horizon}
        self.nbytes = 3 * OBJECT_BYTES + sum(ITEM_BYTES + text_bytes(v) for v in self.values)


class NewValueRule(RuleState):
    """A value of ``field`` not seen for the group within ``baseline``, once the group has
    a history of at least ``learning`` (so a group's first days teach, not alert). A group
    with nothing in ``baseline`` starts learning afresh. Past the bounds, groups still
    learning are forgotten first, then those seen least lately; a group keeps its most
    recently seen values."""

    def __init__(self, rule: Rule, bounds: Bounds = DEFAULT_BOUNDS) -> None:
        super().__init__(rule, bounds)
        assert rule.field is not None
        self.field = rule.field
        learning = max(rule.learning_ns, 1)
        self.groups: GroupTable[GroupKey, History] = GroupTable(
            rule.name, bounds, lambda h: (h.last - h.first >= learning, h.last)
        )

    @property
    def evicted(self) -> int:
        """Groups forgotten so far to stay within the bounds."""
        return self.groups.evicted

    def feed(self, e: Event, out: list[Finding]) -> None:
        """Judge one event; append what it finds to ``out``."""
        key = self.group_of(e)
        if key is None:
            return
        value = e.get(self.field)
        if value is None or value == "":
            return
        baseline_start = e.time - self.rule.baseline_ns
        groups = self.groups
        history = groups.get(key)
        if history is None or history.last < baseline_start:
            if history is not None:
                groups.drop(key)
            history = groups.add(key, History(e.time))
        kept = kept_value(value)
        seen = history.values.get(kept)
        if (seen is None or seen < baseline_start) and e.time - history.first >= max(
            self.rule.learning_ns, 1
        ):
            out.append(self.finding(e, key, 1, (e.seq,), value=value))
        if seen is None or e.time > seen:
            before = history.nbytes
            history.remember(kept, e.time, self.bounds)
            groups.nbytes += history.nbytes - before
        history.first = min(history.first, e.time)
        history.last = max(history.last, e.time)
        groups.fit(protect=key)

    def prune(self, clock: int) -> None:
        """Forget what is older than the baseline needs at receive time ``clock``."""
        horizon = clock - self.rule.baseline_ns - LATE_NS
        self.groups.keep_only(lambda k, h: h.last >= horizon)
        for history in self.groups.values():
            history.keep_since(horizon)
        self.groups.nbytes = sum(key_bytes(k) + h.nbytes for k, h in self.groups.items())


class Sender:
    """One group's receipts per step of receive time, its latest record and checks."""

    __slots__ = ("counts", "event", "fired_seq", "last_received", "last_seq", "nbytes",
                 "scheduled")  # fmt: skip

    def __init__(self) -> None:
        self.nbytes = 6 * OBJECT_BYTES
        self.last_received = 0
        self.last_seq = -1
        self.counts: dict[int, int] = {}  # records per step of receive time
        self.event: Event | None = None
        self.scheduled = False  # a check of this group is in the heap
        self.fired_seq = -1  # the last record after which its silence was reported


class SilenceRule(RuleState):
    """A group silent for ``after`` (by receive time) where, at each ``compare_with`` before
    (a day and a week before, by default), it sent steadily in the same stretch of time: at
    least ``min_records``, and something in every sixth of the stretch. So a service quiet
    every night is not silent at night, nor one whose bursts come a little earlier or later
    each day. Checked from ``after`` past its latest record, then every ``after / 6`` while
    the stretches compared with still lie before the silence; one alert per silence.
    Past the bounds, groups that sent fewer than ``min_records`` in all are forgotten
    first, then those heard from least lately."""

    def __init__(self, rule: Rule, bounds: Bounds = DEFAULT_BOUNDS) -> None:
        super().__init__(rule, bounds)
        least = rule.min_records
        self.groups: GroupTable[GroupKey, Sender] = GroupTable(
            rule.name, bounds, lambda s: (sum(s.counts.values()) >= least, s.last_received)
        )
        self.checks: list[tuple[int, GroupKey]] = []  # (when, group): one per group
        self.step_ns = max(rule.after_ns // 6, 1_000_000_000)
        self.keep_ns = max(rule.compare_ns) + rule.after_ns

    def feed(self, e: Event, out: list[Finding]) -> None:
        """Judge one event; append what it finds to ``out``."""
        key = self.group_of(e)
        if key is None:
            return
        groups = self.groups
        sender = groups.get(key)
        if sender is None:
            sender = groups.add(key, Sender())
        before = sender.nbytes
        sender.last_received = max(sender.last_received, e.received)
        sender.last_seq, sender.event = e.seq, e
        bucket = e.received // self.step_ns
        counts = sender.counts
        counts[bucket] = counts.get(bucket, 0) + 1
        if len(counts) > self.keep_ns // self.step_ns + 64:
            oldest = (sender.last_received - self.keep_ns) // self.step_ns
            sender.counts = {b: n for b, n in counts.items() if b >= oldest}
        sender.nbytes = 6 * OBJECT_BYTES + COUNT_BYTES * len(sender.counts) + event_bytes(e)
        groups.nbytes += sender.nbytes - before
        if not sender.scheduled:
            sender.scheduled = True
            heapq.heappush(self.checks, (sender.last_received + self.rule.after_ns, key))
        if groups.fit(protect=key):
            self.checks = [check for check in self.checks if check[1] in groups]
            heapq.heapify(self.checks)

    @property
    def evicted(self) -> int:
        """Groups forgotten so far to stay within the bounds."""
        return self.groups.evicted

    def _usual(self, sender: Sender, at: int) -> int:
        """The fewest records the group sent in ``[at - offset - after, at - offset)`` over
        the offsets compared with whose stretch lies before the silence (0 where a sixth of
        such a stretch had none, or where no stretch does)."""
        fewest = None
        for offset in self.rule.compare_ns:
            if at - offset > sender.last_received:
                continue  # that stretch lies in the silence itself
            first = (at - offset - self.rule.after_ns) // self.step_ns
            per_bucket = [sender.counts.get(b, 0) for b in range(first, first + 6)]
            sent = sum(per_bucket) if all(per_bucket) else 0
            fewest = sent if fewest is None else min(fewest, sent)
        return fewest or 0

    def advance(self, clock: int, out: list[Finding]) -> None:
        """Run the checks due by ``clock``."""
        checks = self.checks
        while checks and checks[0][0] <= clock:
            at, key = heapq.heappop(checks)
            sender = self.groups.get(key)
            if sender is None:
                continue  # forgotten to stay within the bounds
            due = sender.last_received + self.rule.after_ns
            if at < due:  # it sent since this check was planned
                heapq.heappush(checks, (due, key))
                continue
            # Checks land on due + k * step: the same times however reading began.
            if sender.fired_seq != sender.last_seq and sender.event is not None:
                usual = self._usual(sender, at)
                if usual >= self.rule.min_records:
                    sender.fired_seq = sender.last_seq
                    out.append(self.finding(sender.event, key, usual, (sender.last_seq,),
                                            time_ns=at))  # fmt: skip
            following = at + self.step_ns
            if sender.fired_seq == sender.last_seq or following > (
                sender.last_received + max(self.rule.compare_ns)
            ):
                sender.scheduled = False  # reported, or silent longer than any comparison
                continue
            heapq.heappush(checks, (following, key))

    def prune(self, clock: int) -> None:
        """Forget the groups silent for longer than they are kept, at receive time ``clock``."""
        horizon = clock - self.keep_ns
        self.groups.keep_only(lambda k, g: g.scheduled or g.last_received >= horizon)


def event_bytes(e: Event) -> int:
    """The estimated bytes of an event a rule keeps: its texts and its attributes."""
    size = 24 * OBJECT_BYTES
    for name in FIELDS:
        value = getattr(e, name)
        if value.__class__ is str:
            size += len(value)
    attributes = e._attributes
    if attributes.__class__ is dict:
        size += sum(ITEM_BYTES + len(k) + len(str(v)) for k, v in attributes.items())
    elif attributes:
        size += len(attributes)
    return size
