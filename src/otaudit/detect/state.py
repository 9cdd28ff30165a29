"""What every rule's state shares: the finding it produces, its group, its ``where``.

A rule's state (one class per kind, in :mod:`~otaudit.detect.windows` and
:mod:`~otaudit.detect.baselines`) is fed events in sequence order by the
:class:`~otaudit.detect.engine.Engine` and appends what it finds to a list.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from otaudit.detect.bounds import DEFAULT_BOUNDS, Bounds
from otaudit.detect.conditions import value_of
from otaudit.detect.event import Event
from otaudit.detect.rules import Rule

#: Evidence kept per finding: the sequence numbers of the records that made it.
MAX_EVIDENCE: Final = 100

#: A group: the values of a rule's group-by fields, in their order.
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


def key_of(fields: tuple[str, ...]) -> Callable[[Event], GroupKey]:
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


class RuleState:
    """One rule's state; ``feed`` appends what the event makes the rule find to ``out``.

    The state stays within ``bounds`` (:mod:`~otaudit.detect.bounds`); ``evicted`` counts
    the groups forgotten to do so."""

    def __init__(self, rule: Rule, bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.rule = rule
        self.bounds = bounds
        self.where: Callable[[Event], bool] = rule.where or (lambda e: True)
        self.key = key_of(rule.group_by)

    @property
    def evicted(self) -> int:
        """The groups forgotten so far to stay within the bounds."""
        return 0

    def feed(self, e: Event, out: list[Finding]) -> None:
        """Take in the next event; append what it makes the rule find to ``out``."""
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


class MatchRule(RuleState):
    """``match``: every record that matches ``where`` is a finding."""

    def feed(self, e: Event, out: list[Finding]) -> None:
        """Judge one event; append what it finds to ``out``."""
        if self.where(e):
            out.append(self.finding(e, self.key(e), 1, (e.seq,)))
