"""The rules engine: events in sequence order in, findings out.

One :class:`Engine` holds the state of every rule (sliding windows, baselines,
last-seen times). It is deterministic: fed the same events in the same order
it finds the same things, which is what makes streaming detection (``serve``)
and detection over history (``otaudit detect``) agree. Windows follow the
records' own times; only silence follows the receive time, since going
silent is about what arrives. Alerts and triage records never feed rules.
"""

from __future__ import annotations

import logging
from typing import Final

from otaudit.conventions import OWN_PIPELINE
from otaudit.detect.baselines import NewValueRule, SilenceRule
from otaudit.detect.bounds import DEFAULT_BOUNDS, Bounds
from otaudit.detect.event import Event
from otaudit.detect.rules import Rule
from otaudit.detect.state import Finding, MatchRule, RuleState
from otaudit.detect.windows import SequenceRule, ThresholdRule

log = logging.getLogger("otaudit.detect")

#: The ``audit.action`` of an alert record and of a triage record.
ALERT_ACTION: Final = "otaudit.alert"
TRIAGE_ACTION: Final = "otaudit.alert_triage"
#: The summary of a grouped alert's window (see ``detect.grouping``).
ALERT_UPDATE_ACTION: Final = "otaudit.alert_update"
_NOT_FED: Final = frozenset({ALERT_ACTION, ALERT_UPDATE_ACTION, TRIAGE_ACTION})

#: Rule state too old to matter is forgotten each time receive time crosses a multiple.
PRUNE_PERIOD_NS: Final = 3600 * 1_000_000_000


#: The state class of each rule kind.
KINDS: Final[dict[str, type[RuleState]]] = {
    "match": MatchRule, "threshold": ThresholdRule, "sequence": SequenceRule,
    "new_value": NewValueRule, "silence": SilenceRule,
}  # fmt: skip


class Engine:
    """Every rule's state, fed events in sequence order.

    A rule that fails on a record (a bug, or data no rule foresaw) is logged and skips that
    record; the others go on, and so does detection. Each rule's state stays within
    ``bounds`` (:mod:`~otaudit.detect.bounds`) or the rule's own ``max_groups`` and
    ``max_bytes``; ``evictions`` counts what it forgot to.
    """

    def __init__(self, rules: list[Rule], bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.rules = rules
        self._states = [KINDS[rule.kind](rule, rule.bounds or bounds) for rule in rules]
        self._silences = [s for s in self._states if isinstance(s, SilenceRule)]
        self.clock = 0  # the latest receive time seen (or ticked to)
        self.failures = 0  # (rule, record) evaluations that raised
        self._pruned: int | None = None  # the receive-time period last pruned in

    @property
    def lookback_ns(self) -> int:
        """How much history the rules need before the first record they judge."""
        return max((rule.lookback_ns for rule in self.rules), default=0)

    @property
    def evictions(self) -> dict[str, int]:
        """Per rule name, the groups forgotten so far to stay within the bounds."""
        return {state.rule.name: state.evicted for state in self._states}

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
