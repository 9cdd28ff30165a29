"""Grouping findings into alerts, so that a storm of findings makes a bounded number of alerts.

The first finding of a rule and group in a window raises an alert at once. Later findings of
that rule and group in the same window raise nothing of their own: they are counted into the
alert, and when the window closes one summary of them is sealed (an ``otaudit.alert_update``
record: how many, the first and the last, a sample of the records that triggered them).

Windows are fixed periods of ``window_ns`` of receive time counted from the epoch (the clock
the engine prunes by), so every reader of the same records groups the same findings alike,
wherever it began reading: ``serve`` after a restart, another node, ``otaudit detect``.

A rule with ``max_groups`` groups open in one window puts the findings of any further group
under one more alert of its own, the rule's overflow alert (group ``{"overflow": ...}``), so
that findings spread over many groups (one per actor, say) are bounded too: at most
``max_groups + 1`` alerts per rule per window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import orjson

from otaudit import defaults
from otaudit.detect.state import Finding

#: The default window (``--alert-group-window``): 10 minutes.
DEFAULT_WINDOW_S: Final = defaults.ALERT_GROUP_WINDOW_S
#: Groups one rule may have open in one window before the rest go to its overflow alert.
MAX_GROUPS_PER_RULE: Final = 100
#: The trigger sequence numbers a summary keeps: the first half and the last half of them.
SAMPLE: Final = 50
#: The group key of a rule's overflow alert.
OVERFLOW_KEY: Final = "overflow"


@dataclass(frozen=True)
class Raised:
    """A finding and when it was raised: the receive time (the server's clock) of the record
    that triggered it, or for ``silence`` the receive time at which the silence was judged.
    Never the time a client claims for its record."""

    finding: Finding
    raised_ns: int

    @property
    def alert_id(self) -> str:
        """The alert's id (the finding's)."""
        return self.finding.alert_id


@dataclass(frozen=True)
class Grouped:
    """The summary of one closed window of an alert: every finding of its rule and group raised
    in ``[window_start_ns, window_end_ns)``, the alert's own included."""

    alert: Raised
    window_start_ns: int
    window_end_ns: int
    count: int
    last_ns: int
    last_seq: int
    #: Trigger sequence numbers: the first ``SAMPLE // 2`` and the last ``SAMPLE // 2``.
    sample: tuple[int, ...]

    @property
    def alert_id(self) -> str:
        """The id of the alert summarised."""
        return self.alert.alert_id


#: What grouping hands on: alerts to raise, and summaries to seal.
Note = Raised | Grouped


class _Open:
    """One alert's window while it is open."""

    __slots__ = ("alert", "count", "head", "last_ns", "last_seq", "tail")

    def __init__(self, alert: Raised) -> None:
        self.alert = alert
        self.count = 1
        self.last_ns = alert.raised_ns
        self.last_seq = alert.finding.trigger_seq
        self.head = [alert.finding.trigger_seq]
        self.tail: deque[int] = deque(maxlen=SAMPLE // 2)

    def fold(self, item: Raised) -> None:
        self.count += 1
        self.last_ns = max(self.last_ns, item.raised_ns)
        self.last_seq = item.finding.trigger_seq
        if len(self.head) < SAMPLE // 2:
            self.head.append(self.last_seq)
        else:
            self.tail.append(self.last_seq)


class AlertGrouper:
    """Folds raised findings into one alert per rule, group and window (see the module).

    Memory: at most ``max_groups + 1`` open alerts per rule, each with ``SAMPLE`` numbers.
    """

    def __init__(self, window_ns: int = DEFAULT_WINDOW_S * 1_000_000_000,
                 max_groups: int = MAX_GROUPS_PER_RULE) -> None:  # fmt: skip
        if window_ns <= 0:
            raise ValueError(f"the alert group window must be positive, got {window_ns} ns")
        self.window_ns = window_ns
        self.max_groups = max_groups
        self._period: int | None = None  # the window now open (its index from the epoch)
        self._open: dict[tuple[str, str], _Open] = {}
        self._groups: dict[str, int] = {}  # open groups per rule, the overflow one aside
        self.folded = 0  # findings counted into an alert raised before them, so far

    def window_start(self, clock_ns: int) -> int:
        """The start of the window holding ``clock_ns``."""
        return clock_ns // self.window_ns * self.window_ns

    def advance(self, clock_ns: int) -> list[Grouped]:
        """Let receive time pass to ``clock_ns``: the summaries of the windows that closed
        (only of alerts that had findings counted into them)."""
        period = clock_ns // self.window_ns
        if self._period is None or period <= self._period:
            if self._period is None:
                self._period = period
            return []
        closed = self._close()
        self._period = period
        return closed

    def _add(self, item: Raised) -> Raised | None:
        """The alert to raise for ``item``; None when it is counted into an open one (the
        caller has advanced to the item's time)."""
        finding = item.finding
        rule = finding.rule.name
        key = (rule, orjson.dumps(finding.group, option=orjson.OPT_SORT_KEYS).decode())
        if key not in self._open and self._groups.get(rule, 0) >= self.max_groups:
            key = (rule, OVERFLOW_KEY)
            if key not in self._open:
                item = Raised(self._overflow(finding), item.raised_ns)
        group = self._open.get(key)
        if group is not None:
            group.fold(item)
            self.folded += 1
            return None
        self._open[key] = _Open(item)
        if key[1] != OVERFLOW_KEY:
            self._groups[rule] = self._groups.get(rule, 0) + 1
        return item

    def feed(self, items: list[Raised], clock_ns: int | None = None) -> list[Note]:
        """Advance to ``clock_ns`` (if given), then add ``items``: what to seal, in order."""
        out: list[Note] = []
        if clock_ns is not None:
            out += self.advance(clock_ns)
        for item in items:
            out += self.advance(item.raised_ns)
            raised = self._add(item)
            if raised is not None:
                out.append(raised)
        return out

    def open_counts(self) -> dict[str, int]:
        """Per alert id, the findings of the alerts whose window is open, where more than one."""
        return {g.alert.alert_id: g.count for g in self._open.values() if g.count > 1}

    def _close(self) -> list[Grouped]:
        assert self._period is not None
        start = self._period * self.window_ns
        closed = [
            Grouped(g.alert, start, start + self.window_ns, g.count, g.last_ns, g.last_seq,
                    (*g.head, *g.tail))
            for g in self._open.values() if g.count > 1
        ]  # fmt: skip
        self._open.clear()
        self._groups.clear()
        return closed

    def _overflow(self, finding: Finding) -> Finding:
        rule = finding.rule
        window_s = self.window_ns // 1_000_000_000
        summary = (
            f"{rule.name}: more than {self.max_groups} groups within {window_s} s; this alert "
            f"stands for the findings of the further groups (the first: {finding.summary})"
        )
        return Finding(rule, {OVERFLOW_KEY: f"more than {self.max_groups} groups"},
                       finding.trigger_seq, finding.time_ns, finding.count, finding.evidence,
                       summary, finding.value)  # fmt: skip
