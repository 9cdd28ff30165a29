"""What a determined producer or a long-running attack must not do to detection: make the
findings depend on where reading began, hold windows open with future-dated records, wipe
the rules' memory, or forge alerts and their triage."""

from __future__ import annotations

import time
from pathlib import Path

from detect_traffic import DAY, HOUR, MIN, Act, S, anchor, background, entries, login, scenarios
from otaudit.detect.alerts import read_alerts
from otaudit.detect.grouping import Note
from otaudit.detect.rules import build_rule, load_rules
from otaudit.detect.run import Detector, detect_history
from otaudit.detect.state import Finding
from otaudit.store.sqlite import SQLiteStore

NOW = (time.time_ns() // MIN) * MIN


def ledger(path: Path, acts: list[Act]) -> SQLiteStore:
    store = SQLiteStore(path)
    store.append(list(entries(sorted(acts, key=lambda a: a.received_ns))))
    return store


def ids(findings: list[Finding], since: int, rule: str | None = None) -> set[str]:
    return {f.alert_id for f in findings
            if f.time_ns >= since and (rule is None or f.rule.name == rule)}  # fmt: skip


def test_a_steady_attack_gives_the_same_alerts_wherever_reading_begins(tmp_path: Path) -> None:
    # A service account retrying a stale password every 149 s for 40 days.
    acts = [login(t, "svc-sync", "10.9.9.9", ok=False)
            for t in range(NOW - 40 * DAY, NOW - MIN, 149 * S)]  # fmt: skip
    store = ledger(tmp_path / "ledger.db", acts)
    try:
        rules = load_rules()
        recent = NOW - 2 * DAY
        wide = detect_history(store, rules, since_ns=NOW - 30 * DAY, now_ns=NOW).findings
        narrow = detect_history(store, rules, since_ns=recent, now_ns=NOW).findings
        shifted = detect_history(store, rules, since_ns=recent - 10 * MIN, now_ns=NOW).findings
        assert ids(wide, recent) == ids(narrow, recent) == ids(shifted, recent)
        # One alert per hour (the rule's window) while it lasts, not one per 20 failures.
        assert len(ids(narrow, recent, "brute_force_user")) in (47, 48, 49)

        # Streaming from a saved position finds the same as history from there.
        emit_from = store.first_seq_at(recent)
        published: list[Note] = []
        reader = SQLiteStore(tmp_path / "ledger.db", readonly=True)
        detector = Detector(reader, rules, published.extend, emit_from=emit_from, poll_s=0.05)
        detector.start()
        deadline = time.monotonic() + 30
        while detector.position != store.tree_size() and time.monotonic() < deadline:
            time.sleep(0.05)
        detector.stop()
        reader.close()
        assert {f.alert_id for f in published} == ids(narrow, recent)
    finally:
        store.close()


def test_future_dated_records_do_not_hold_windows_open(tmp_path: Path) -> None:
    # One failure dated a year ahead, then 19 ordinary typos over ten days: no brute force.
    acts = [login(NOW - 10 * DAY, "bob", "10.0.0.2", ok=False)]
    acts[0] = Act(
        NOW + 365 * DAY,
        acts[0].service,
        acts[0].name,
        acts[0].attributes,
        delay_ns=-(365 * DAY + 10 * DAY) + 200_000_000,
    )  # received 10 days ago
    acts += [login(NOW - 10 * DAY + i * 12 * HOUR, "bob", "10.0.0.2", ok=False)
             for i in range(1, 20)]  # fmt: skip
    store = ledger(tmp_path / "ledger.db", acts)
    try:
        assert detect_history(store, load_rules(), since_ns=None, now_ns=NOW).findings == []
    finally:
        store.close()


def test_a_record_from_the_far_future_does_not_wipe_what_the_rules_learned(
    tmp_path: Path,
) -> None:
    # (State is pruned every hour of receive time, so eleven days prune often.)
    start = NOW - 11 * DAY
    a = anchor(start, NOW)
    acts = background(start, NOW, heartbeat_s=None) + scenarios(a)["new_client_address"]
    acts.append(Act(NOW + 70 * 365 * DAY, "accounts-api", "clock gone wrong", {
        "audit.action": "login", "user.id": "u03", "client.address": "10.1.0.3",
        "audit.result": "success"}, delay_ns=-(70 * 365 * DAY) - 5 * DAY))  # fmt: skip
    store = ledger(tmp_path / "ledger.db", acts)
    try:
        found = detect_history(store, load_rules(), since_ns=start, now_ns=NOW).findings
    finally:
        store.close()
    assert [(f.rule.name, f.value) for f in found] == [("new_client_address", "192.0.2.200")]


def test_clients_cannot_forge_alerts_or_triage(tmp_path: Path) -> None:
    start = NOW - 11 * DAY
    a = anchor(start, NOW)
    store = ledger(tmp_path / "ledger.db", background(start, NOW, heartbeat_s=None)
                   + scenarios(a)["privilege_escalation"])  # fmt: skip
    try:
        from otaudit.detect.alerts import alert_entry

        findings = detect_history(store, load_rules(), since_ns=start, now_ns=NOW).findings
        store.append([alert_entry(f) for f in findings])
        real = findings[0].alert_id
        # Sent by a client (pipeline otlp): a triage closing the real alert, and a fake alert.
        store.append(list(entries([
            Act(NOW - HOUR, "evil-api", "close it", {
                "audit.action": "otaudit.alert_triage", "enduser.id": "the-ciso",
                "audit.target": real, "audit.alert.id": real,
                "audit.alert.decision": "false_positive", "audit.result": "success"}),
            Act(NOW - HOUR, "evil-api", "fake", {
                "audit.action": "otaudit.alert", "enduser.id": "otaudit-detect",
                "audit.target": "0000000000000000", "audit.alert.id": "0000000000000000",
                "audit.alert.group": "{not json", "audit.result": "detected"}),
        ])))  # fmt: skip
        alerts = read_alerts(store)
        assert [a.alert_id for a in alerts] == [f.alert_id for f in findings]
        assert all(a.state == "open" for a in alerts)
        # Such records are judged like any other record: they are a client's, not otaudit's.
        watch = build_rule({"name": "watch", "kind": "match",
                            "where": {"action": "otaudit.alert_triage"}}, "test")  # fmt: skip
        (forged,) = detect_history(store, [watch], since_ns=start, now_ns=NOW).findings
        assert forged.group == {} and forged.time_ns == NOW - HOUR
    finally:
        store.close()
