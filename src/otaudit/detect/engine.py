"""The rules engine: events in sequence order in, findings out.

One :class:`Engine` holds the state of every rule (sliding windows, baselines,
last-seen times). It is deterministic: fed the same events in the same order
it finds the same things, which is what makes streaming detection (``serve``)
and detection over history (``otaudit detect``) agree. Windows follow the
records' own times; only silence follows the receive time, since going
silent is about what arrives. Alerts and triage records never feed rules.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import logging
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from otaudit.conventions import OWN_PIPELINE
from otaudit.detect.conditions import value_of
from otaudit.detect.event import Event
from otaudit.detect.rules import LATE_NS, Rule

log = logging.getLogger("otaudit.detect")

#: The ``audit.action`` of an alert record and of a triage record.
ALERT_ACTION: Final = "otaudit.alert"
TRIAGE_ACTION: Final = "otaudit.alert_triage"
_NOT_FED: Final = frozenset({ALERT_ACTION, TRIAGE_ACTION})

#: Evidence kept per finding: the sequence numbers of the records that made it.
MAX_EVIDENCE: Final = 100
#: Rule state too old to matter is forgotten each time receive time crosses a multiple.
PRUNE_PERIOD_NS: Final = 3600 * 1_000_000_000


GroupKey = tuple[Any, ...]


@dataclass(frozen=True)
class Finding:
    """One thing a rule found: the rule, the group, the records that make it, a summary."""

    rule: Rule
    group: dict[str, Any]
    trigger_seq: int
    time_ns: int
    count: int
    evidence: tuple[int, ...]
    summary: str
    value: str | None = None
    alert_id: str = field(init=False)

    def __post_init__(self) -> None:
        identity = orjson.dumps(
            [self.rule.name, self.rule.fingerprint, self.trigger_seq, self.group],
            option=orjson.OPT_SORT_KEYS,
        )
        object.__setattr__(self, "alert_id", hashlib.sha256(identity).hexdigest()[:16])


def _key_of(fields: tuple[str, ...]) -> Callable[[Event], GroupKey]:
    """The function giving an event's group (a tuple of the group-by fields)."""
    if not fields:
        return lambda e: ()
    if not any(f.startswith("attributes.") for f in fields):
        get = operator.attrgetter(*fields)
        if len(fields) == 1:
            return lambda e: (get(e),)
        return get
    readers = [value_of(f) for f in fields]
    return lambda e: tuple(read(e) for read in readers)


class _State:
    """One rule's state; ``feed`` appends what the event makes the rule find to ``out``."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.where: Callable[[Event], bool] = rule.where or (lambda e: True)
        self.key = _key_of(rule.group_by)

    def feed(self, e: Event, out: list[Finding]) -> None:
        raise NotImplementedError

    def group_of(self, e: Event) -> GroupKey | None:
        """The event's group if the rule looks at it (it matches ``where`` and has every
        group-by field), else None."""
        if not self.where(e):
            return None
        key = self.key(e)
        return None if None in key else key

    def prune(self, clock: int) -> None:
        """Forget state too old to matter by receive time ``clock`` (memory only)."""

    def finding(self, e: Event, key: GroupKey, count: int, evidence: Iterable[int], *,
                time_ns: int | None = None, value: str | None = None) -> Finding:  # fmt: skip
        """A finding triggered by ``e`` (for silence: by the group's last record)."""
        rule = self.rule
        group = dict(zip(rule.group_by, key, strict=True))
        values: dict[str, Any] = {name: e.get(name) for name in rule.record_placeholders()
                                  if name not in group}  # fmt: skip
        spec = rule.spec
        values |= group | {
            "count": count, "value": value, "rule": rule.name, "threshold": rule.threshold,
            "window": spec.get("window"), "after": spec.get("after"),
            "baseline": spec.get("baseline"),
        }  # fmt: skip
        kept = tuple(evidence)[-MAX_EVIDENCE:]
        return Finding(rule, group, e.seq, e.time if time_ns is None else time_ns, count, kept,
                       rule.render(values), value)  # fmt: skip


class _Match(_State):
    def feed(self, e: Event, out: list[Finding]) -> None:
        if self.where(e):
            out.append(self.finding(e, self.key(e), 1, (e.seq,)))


class _Window:
    """A group's matching records ordered by time: (time, seq, value), for counting any
    time range whatever order the records arrived in."""

    __slots__ = ("closed_seq", "items", "last_received", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.items: list[tuple[int, Any]] = []  # (seq, value), in the order of ``times``
        self.closed_seq = -1  # sequence rules: the last record that ended a run
        self.last_received = 0

    def add(self, time: int, seq: int, value: Any) -> None:
        at = bisect.bisect_right(self.times, time)
        self.times.insert(at, time)
        self.items.insert(at, (seq, value))

    def between(self, start: int, end: int) -> list[tuple[int, Any]]:
        """The (seq, value) of the records with ``start <= time <= end``."""
        times = self.times
        return self.items[bisect.bisect_left(times, start) : bisect.bisect_right(times, end)]

    def forget_before(self, time: int) -> None:
        at = bisect.bisect_left(self.times, time)
        if at:
            del self.times[:at]
            del self.items[:at]


class _Windowed(_State):
    """A rule counting each group's matching records within ``window`` of record time.

    Records are kept ``LATE`` beyond the window (counted back from the group's newest
    record), so one that arrives out of order by up to that much still meets the records
    of its window."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.groups: dict[GroupKey, _Window] = {}

    def window(self, key: GroupKey, e: Event) -> _Window:
        """The group's window, with what is too old for any window forgotten."""
        window = self.groups.get(key)
        if window is None:
            window = self.groups[key] = _Window()
        elif window.times:
            window.forget_before(max(window.times[-1], e.time) - self.rule.window_ns - LATE_NS)
        return window

    def prune(self, clock: int) -> None:
        # By receive time: a group none of whose records arrived lately is done with.
        horizon = clock - self.rule.window_ns - LATE_NS
        self.groups = {k: w for k, w in self.groups.items() if w.last_received >= horizon}


class _Threshold(_Windowed):
    """At least ``threshold`` matching records (or distinct values) in a group within
    ``window`` before a record: an alert at that record, at most one per group in each
    period of ``window`` (counted from the epoch), so that a steady attack raises one alert
    per period and which records raise them does not depend on where reading began."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.distinct = rule.distinct
        self.fired: dict[GroupKey, set[int]] = {}

    def feed(self, e: Event, out: list[Finding]) -> None:
        key = self.group_of(e)
        if key is None:
            return
        value = e.get(self.distinct) if self.distinct else None
        if self.distinct and value is None:
            return
        window = self.window(key, e)
        window.add(e.time, e.seq, value)
        window.last_received = e.received
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


class _Sequence(_Windowed):
    """At least ``threshold`` records matching ``where`` in a group within ``window`` before
    a record matching ``then``; a ``then`` record ends the run either way."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        assert rule.then is not None
        self.then = rule.then

    def feed(self, e: Event, out: list[Finding]) -> None:
        closing = self.then(e)
        if not closing and not self.where(e):
            return
        key = self.key(e)
        if None in key:
            return
        window = self.window(key, e)
        window.last_received = e.received
        if not closing:
            window.add(e.time, e.seq, None)
            return
        run = [seq for seq, _ in window.between(e.time - self.rule.window_ns, e.time)
               if seq > window.closed_seq]  # fmt: skip
        window.closed_seq = e.seq
        if len(run) >= self.rule.threshold:
            out.append(self.finding(e, key, len(run), [*run, e.seq]))


class _History:
    __slots__ = ("first", "last", "values")

    def __init__(self, time: int) -> None:
        self.first = time
        self.last = time
        self.values: dict[str, int] = {}


class _NewValue(_State):
    """A value of ``field`` not seen for the group within ``baseline``, once the group has
    a history of at least ``learning`` (so a group's first days teach, not alert). A group
    with nothing in ``baseline`` starts learning afresh."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        assert rule.field is not None
        self.field = rule.field
        self.groups: dict[GroupKey, _History] = {}

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
            history = self.groups[key] = _History(e.time)
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
        kept: dict[GroupKey, _History] = {}
        for key, history in self.groups.items():
            if history.last >= horizon:
                history.values = {v: t for v, t in history.values.items() if t >= horizon}
                kept[key] = history
        self.groups = kept


class _Sender:
    __slots__ = ("counts", "event", "fired_seq", "last_received", "last_seq", "scheduled")

    def __init__(self) -> None:
        self.last_received = 0
        self.last_seq = -1
        self.counts: dict[int, int] = {}  # records per step of receive time
        self.event: Event | None = None
        self.scheduled = False  # a check of this group is in the heap
        self.fired_seq = -1  # the last record after which its silence was reported


class _Silence(_State):
    """A group silent for ``after`` (by receive time) where, at each ``compare_with`` before
    (a day and a week before, by default), it sent steadily in the same stretch of time: at
    least ``min_records``, and something in every sixth of the stretch. So a service quiet
    every night is not silent at night, nor one whose bursts come a little earlier or later
    each day. Checked from ``after`` past its latest record, then every ``after / 6`` while
    the stretches compared with still lie before the silence; one alert per silence."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.groups: dict[GroupKey, _Sender] = {}
        self.checks: list[tuple[int, GroupKey]] = []  # (when, group): one per group
        self.step_ns = max(rule.after_ns // 6, 1_000_000_000)
        self.keep_ns = max(rule.compare_ns) + rule.after_ns

    def feed(self, e: Event, out: list[Finding]) -> None:
        key = self.group_of(e)
        if key is None:
            return
        sender = self.groups.get(key)
        if sender is None:
            sender = self.groups[key] = _Sender()
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

    def _usual(self, sender: _Sender, at: int) -> int:
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


_KINDS: Final[dict[str, type[_State]]] = {
    "match": _Match, "threshold": _Threshold, "sequence": _Sequence, "new_value": _NewValue,
    "silence": _Silence,
}  # fmt: skip


class Engine:
    """Every rule's state, fed events in sequence order.

    A rule that fails on a record (a bug, or data no rule foresaw) is logged and skips that
    record; the others go on, and so does detection.
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._states = [_KINDS[rule.kind](rule) for rule in rules]
        self._silences = [s for s in self._states if isinstance(s, _Silence)]
        self.clock = 0  # the latest receive time seen (or ticked to)
        self.failures = 0  # (rule, record) evaluations that raised
        self._pruned: int | None = None  # the receive-time period last pruned in

    @property
    def lookback_ns(self) -> int:
        """How much history the rules need before the first record they judge."""
        return max((rule.lookback_ns for rule in self.rules), default=0)

    def feed(self, e: Event) -> list[Finding]:
        """Evaluate one event (the next in sequence order); return what it triggers."""
        out: list[Finding] = []
        if e.received > self.clock:
            self.clock = e.received
            self._advance(self.clock, e, out)
        if e.action in _NOT_FED and e.pipeline == OWN_PIPELINE:
            return out
        for state in self._states:
            try:
                state.feed(e, out)
            except Exception:
                self._failed(state.rule, e)
        period = self.clock // PRUNE_PERIOD_NS
        if period != self._pruned:
            # At fixed receive-time boundaries, so that two readers of the same records forget
            # the same things at the same records wherever they began.
            if self._pruned is not None:
                for state in self._states:
                    state.prune(period * PRUNE_PERIOD_NS)
            self._pruned = period
        return out

    def _advance(self, clock: int, e: Event | None, out: list[Finding]) -> None:
        for silence in self._silences:
            try:
                silence.advance(clock, out)
            except Exception:  # one rule's failure must not stop the others
                self._failed(silence.rule, e)

    def _failed(self, rule: Rule, e: Event | None) -> None:
        self.failures += 1
        if self.failures <= 100 or self.failures % 10_000 == 0:
            log.exception("rule %s failed on ledger seq %s (skipped; %d failures so far)",
                          rule.name, None if e is None else e.seq, self.failures)  # fmt: skip

    def tick(self, now_ns: int) -> list[Finding]:
        """Let receive time pass to ``now_ns`` with nothing arriving (silence findings)."""
        out: list[Finding] = []
        if now_ns > self.clock:
            self.clock = now_ns
            self._advance(now_ns, None, out)
        return out
