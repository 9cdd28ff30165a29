"""Rules over long memories: ``new_value`` (baselines) and ``silence`` (receive time)."""

from __future__ import annotations

import heapq

from otaudit.detect.event import Event
from otaudit.detect.rules import LATE_NS, Rule
from otaudit.detect.state import Finding, GroupKey, RuleState


class History:
    """One group's values with when each was last seen, and the group's first and last."""

    __slots__ = ("first", "last", "values")

    def __init__(self, time: int) -> None:
        self.first = time
        self.last = time
        self.values: dict[str, int] = {}


class NewValueRule(RuleState):
    """A value of ``field`` not seen for the group within ``baseline``, once the group has
    a history of at least ``learning`` (so a group's first days teach, not alert). A group
    with nothing in ``baseline`` starts learning afresh."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        assert rule.field is not None
        self.field = rule.field
        self.groups: dict[GroupKey, History] = {}

    def feed(self, e: Event, out: list[Finding]) -> None:
        key = self.group_of(e)
        if key is None:
            return
        value = e.get(self.field)
        if value is None or value == "":
            return
        baseline_start = e.time - self.rule.baseline_ns
        history = self.groups.get(key)
        if history is None or history.last < baseline_start:
            history = self.groups[key] = History(e.time)
        seen = history.values.get(value)
        if (seen is None or seen < baseline_start) and e.time - history.first >= max(
            self.rule.learning_ns, 1
        ):
            out.append(self.finding(e, key, 1, (e.seq,), value=value))
        if seen is None or e.time > seen:
            history.values[value] = e.time
        history.first = min(history.first, e.time)
        history.last = max(history.last, e.time)

    def prune(self, clock: int) -> None:
        horizon = clock - self.rule.baseline_ns - LATE_NS
        kept: dict[GroupKey, History] = {}
        for key, history in self.groups.items():
            if history.last >= horizon:
                history.values = {v: t for v, t in history.values.items() if t >= horizon}
                kept[key] = history
        self.groups = kept


class Sender:
    """One group's receipts per step of receive time, its latest record and checks."""

    __slots__ = ("counts", "event", "fired_seq", "last_received", "last_seq", "scheduled")

    def __init__(self) -> None:
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
    the stretches compared with still lie before the silence; one alert per silence."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.groups: dict[GroupKey, Sender] = {}
        self.checks: list[tuple[int, GroupKey]] = []  # (when, group): one per group
        self.step_ns = max(rule.after_ns // 6, 1_000_000_000)
        self.keep_ns = max(rule.compare_ns) + rule.after_ns

    def feed(self, e: Event, out: list[Finding]) -> None:
        key = self.group_of(e)
        if key is None:
            return
        sender = self.groups.get(key)
        if sender is None:
            sender = self.groups[key] = Sender()
        sender.last_received = max(sender.last_received, e.received)
        sender.last_seq, sender.event = e.seq, e
        bucket = e.received // self.step_ns
        counts = sender.counts
        counts[bucket] = counts.get(bucket, 0) + 1
        if len(counts) > self.keep_ns // self.step_ns + 64:
            oldest = (sender.last_received - self.keep_ns) // self.step_ns
            sender.counts = {b: n for b, n in counts.items() if b >= oldest}
        if not sender.scheduled:
            sender.scheduled = True
            heapq.heappush(self.checks, (sender.last_received + self.rule.after_ns, key))

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
            sender = self.groups[key]
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
        horizon = clock - self.keep_ns
        self.groups = {k: g for k, g in self.groups.items()
                       if g.scheduled or g.last_received >= horizon}  # fmt: skip
