"""The rules engine: events in sequence order in, findings out.

One :class:`Engine` holds the state of every rule (sliding windows, baselines,
last-seen times). It is deterministic: fed the same events in the same order
it finds the same things, which is what makes streaming detection (``serve``)
and detection over history (``otaudit detect``) agree. Windows follow the
records' own times; only silence follows the receive time, since going
silent is about what arrives. Alerts and triage records never feed rules.
"""

from __future__ import annotations

import hashlib
import heapq
import operator
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from otaudit.detect.conditions import value_of
from otaudit.detect.event import Event
from otaudit.detect.rules import Rule

#: The ``audit.action`` of an alert record and of a triage record.
ALERT_ACTION: Final = "otaudit.alert"
TRIAGE_ACTION: Final = "otaudit.alert_triage"
_NOT_FED: Final = frozenset({ALERT_ACTION, TRIAGE_ACTION})
#: Evidence kept per finding: the sequence numbers of the records that made it.
MAX_EVIDENCE: Final = 100
_PRUNE_EVERY: Final = 50_000
_NS_PER_DAY: Final = 86_400_000_000_000

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

    def prune(self, now_ns: int) -> None:
        """Forget state too old to matter (memory only; findings do not depend on it)."""

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
    """The matching records of one group inside the window, and distinct values counted."""

    __slots__ = ("records", "values")

    def __init__(self) -> None:
        self.records: deque[tuple[int, int, Any]] = deque()
        self.values: Counter[Any] = Counter()

    def add(self, time: int, seq: int, value: Any) -> None:
        self.records.append((time, seq, value))
        self.values[value] += 1

    def evict(self, before: int) -> None:
        records, values = self.records, self.values
        while records and records[0][0] < before:
            _, _, value = records.popleft()
            values[value] -= 1
            if not values[value]:
                del values[value]


class _Windowed(_State):
    """A rule keeping each group's matching records of the last ``window``."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.groups: dict[GroupKey, _Window] = {}

    def window(self, key: GroupKey) -> _Window:
        """The group's window (a new, empty one for a group not seen)."""
        window = self.groups.get(key)
        if window is None:
            window = self.groups[key] = _Window()
        return window

    def prune(self, now_ns: int) -> None:
        horizon = now_ns - self.rule.window_ns - _NS_PER_DAY
        self.groups = {k: w for k, w in self.groups.items()
                       if w.records and w.records[-1][0] >= horizon}  # fmt: skip


class _Threshold(_Windowed):
    """At least ``threshold`` matching records (or distinct values) per group in ``window``.

    After an alert the group starts afresh: each further ``threshold`` gives another."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.distinct = rule.distinct

    def feed(self, e: Event, out: list[Finding]) -> None:
        if not self.where(e):
            return
        key = self.key(e)
        if None in key:
            return
        value = e.get(self.distinct) if self.distinct else None
        if self.distinct and value is None:
            return
        window = self.window(key)
        window.add(e.time, e.seq, value)
        window.evict(e.time - self.rule.window_ns)
        count = len(window.values) if self.distinct else len(window.records)
        if count >= self.rule.threshold:
            out.append(self.finding(e, key, count, (seq for _, seq, _ in window.records)))
            del self.groups[key]


class _Sequence(_Windowed):
    """At least ``threshold`` records matching ``where``, then one matching ``then``, in
    one group within ``window``. A ``then`` record ends the run either way."""

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
        if not closing:
            window = self.window(key)
            window.add(e.time, e.seq, None)
            window.evict(e.time - self.rule.window_ns)
            return
        ended = self.groups.pop(key, None)
        if ended is not None:
            ended.evict(e.time - self.rule.window_ns)
            if len(ended.records) >= self.rule.threshold:
                seqs = [seq for _, seq, _ in ended.records] + [e.seq]
                out.append(self.finding(e, key, len(ended.records), seqs))


class _History:
    __slots__ = ("first", "last", "values")

    def __init__(self, time: int) -> None:
        self.first = time
        self.last = time
        self.values: dict[str, int] = {}


class _NewValue(_State):
    """A value of ``field`` not seen for the group within ``baseline``, once the group has
    a history of at least ``learning`` (so a group's first days teach, not alert)."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        assert rule.field is not None
        self.field = rule.field
        self.groups: dict[GroupKey, _History] = {}

    def feed(self, e: Event, out: list[Finding]) -> None:
        if not self.where(e):
            return
        value = e.get(self.field)
        if value is None or value == "":
            return
        key = self.key(e)
        if None in key:
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
        history.last = max(history.last, e.time)

    def prune(self, now_ns: int) -> None:
        horizon = now_ns - self.rule.baseline_ns - _NS_PER_DAY
        kept: dict[GroupKey, _History] = {}
        for key, history in self.groups.items():
            if history.last >= horizon:
                history.values = {v: t for v, t in history.values.items() if t >= horizon}
                kept[key] = history
        self.groups = kept


class _Sender:
    __slots__ = ("buckets", "event", "last_received", "last_seq")

    def __init__(self) -> None:
        self.last_received = 0
        self.last_seq = -1
        self.buckets: deque[list[int]] = deque()  # [bucket index, records], oldest first
        self.event: Event | None = None


class _Silence(_State):
    """A group silent for ``after`` (by receive time) that, one ``baseline`` earlier, sent at
    least ``min_records`` in the same stretch of time: silence where it usually sends (a
    service that is quiet every night is not silent at night)."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.groups: dict[GroupKey, _Sender] = {}
        self.deadlines: list[tuple[int, int, GroupKey]] = []  # (deadline, last seq, group)
        self.bucket_ns = max(rule.after_ns // 6, 1_000_000_000)

    def feed(self, e: Event, out: list[Finding]) -> None:
        if not self.where(e):
            return
        key = self.key(e)
        if None in key:
            return
        sender = self.groups.get(key)
        if sender is None:
            sender = self.groups[key] = _Sender()
        sender.last_received = max(sender.last_received, e.received)
        sender.last_seq, sender.event = e.seq, e
        bucket = e.received // self.bucket_ns
        buckets = sender.buckets
        if buckets and buckets[-1][0] >= bucket:
            buckets[-1][1] += 1
        else:
            buckets.append([bucket, 1])
        oldest = (sender.last_received - self.rule.baseline_ns) // self.bucket_ns - 1
        while buckets[0][0] < oldest:
            buckets.popleft()
        heapq.heappush(self.deadlines, (sender.last_received + self.rule.after_ns, e.seq, key))

    def _usual(self, sender: _Sender, deadline: int) -> int:
        """Records the group sent in ``[deadline - baseline - after, deadline - baseline)``."""
        first = (deadline - self.rule.baseline_ns - self.rule.after_ns) // self.bucket_ns
        last = (deadline - self.rule.baseline_ns) // self.bucket_ns
        return sum(n for b, n in sender.buckets if first <= b < last)

    def advance(self, clock: int, out: list[Finding]) -> None:
        """Find the groups silent since before ``clock - after``."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= clock:
            deadline, seq, key = heapq.heappop(deadlines)
            sender = self.groups.get(key)
            if sender is None or sender.last_seq != seq or sender.event is None:
                continue  # it sent again since
            usual = self._usual(sender, deadline)
            if usual >= self.rule.min_records:
                out.append(self.finding(sender.event, key, usual, (seq,), time_ns=deadline))
            if sender.last_received < clock - self.rule.baseline_ns - self.rule.after_ns:
                del self.groups[key]


_KINDS: Final[dict[str, type[_State]]] = {
    "match": _Match, "threshold": _Threshold, "sequence": _Sequence, "new_value": _NewValue,
    "silence": _Silence,
}  # fmt: skip


class Engine:
    """Every rule's state, fed events in sequence order."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._states = [_KINDS[rule.kind](rule) for rule in rules]
        self._silences = [s for s in self._states if isinstance(s, _Silence)]
        self.clock = 0  # the latest receive time seen (or ticked to)
        self._latest = 0  # the latest record time seen
        self._fed = 0

    @property
    def lookback_ns(self) -> int:
        """How much history the rules need before the first record they judge."""
        return max((rule.lookback_ns for rule in self.rules), default=0)

    def feed(self, e: Event) -> list[Finding]:
        """Evaluate one event (the next in sequence order); return what it triggers."""
        out: list[Finding] = []
        if e.received > self.clock:
            self.clock = e.received
            for silence in self._silences:
                silence.advance(self.clock, out)
        if e.action in _NOT_FED:
            return out
        for state in self._states:
            state.feed(e, out)
        self._latest = max(self._latest, e.time)
        self._fed += 1
        if self._fed % _PRUNE_EVERY == 0:
            for state in self._states:
                state.prune(self._latest)
        return out

    def tick(self, now_ns: int) -> list[Finding]:
        """Let receive time pass to ``now_ns`` with nothing arriving (silence findings)."""
        out: list[Finding] = []
        if now_ns > self.clock:
            self.clock = now_ns
            for silence in self._silences:
                silence.advance(now_ns, out)
        return out
