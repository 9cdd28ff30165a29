"""Detection reads the same events from either store: the same findings, alert ids, triage."""

from __future__ import annotations

import time

from detect_traffic import DAY, MIN, anchor, background, entries, scenarios
from otaudit.access import Reader
from otaudit.detect.alerts import alert_entry, read_alerts, triage_entry
from otaudit.detect.rules import load_rules
from otaudit.detect.run import detect_history
from otaudit.store.base import Store
from otaudit.store.events import EVENT_COLUMNS

NOW = (time.time_ns() // MIN) * MIN
START = NOW - 10 * DAY


def test_findings_alerts_and_triage_on_every_store(any_store: Store) -> None:
    acts = background(START, NOW, heartbeat_s=600)
    for scenario in scenarios(anchor(START, NOW)).values():
        acts += scenario
    sealed = list(entries(sorted(acts, key=lambda a: a.received_ns)))
    any_store.append(sealed)
    assert any_store.first_seq_at(NOW + 1) is None
    assert any_store.first_seq_at(0) == 0
    rows = list(any_store.detect_rows(5, 8))
    assert [r[0] for r in rows] == [5, 6, 7] and all(len(r) == len(EVENT_COLUMNS) for r in rows)

    run = detect_history(any_store, load_rules(), since_ns=START, now_ns=NOW)
    # The same traffic on any store: these counts are those of the SQLite-only rule tests.
    by_rule = {f.rule.name for f in run.findings}
    assert len(by_rule) == 9 and "producer_silent" not in by_rule  # heartbeats every 10 min
    assert run.records == len(sealed)

    seqs = any_store.append([alert_entry(f) for f in run.findings]).seqs
    assert None not in seqs
    again = any_store.append([alert_entry(f) for f in run.findings]).seqs
    assert set(again) == {None}  # the same finding is the same record: held once
    alert = run.findings[0].alert_id
    any_store.append([triage_entry(Reader("ana"), alert, "escalated", "IR-7")])
    alerts = read_alerts(any_store)
    assert [a.alert_id for a in alerts] == [f.alert_id for f in run.findings]
    assert alerts[0].state == "escalated" and alerts[0].is_open
    assert alerts[0].triage[0].actor == "ana" and alerts[0].triage[0].note == "IR-7"
    # Alerts and triage never feed the rules: judging again finds exactly the same.
    rerun = detect_history(any_store, load_rules(), since_ns=START, now_ns=NOW)
    assert [f.alert_id for f in rerun.findings] == [f.alert_id for f in run.findings]
