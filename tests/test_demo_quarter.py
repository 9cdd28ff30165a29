"""A simulated quarter (``otaudit.demo_quarter``): sealed as a server would have sealed it,
it verifies, its counts are what it reports, the month's attacks raise alerts that are
triaged, and the producer that lost three numbers shows in ``otaudit gaps``."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit import datadir
from otaudit.demo_quarter import (
    DAY,
    GAP_AT,
    GAP_SERVICE,
    GAP_SIZE,
    QuarterFacts,
    entries,
    fill_quarter,
    quarter_acts,
    seal_act,
)
from otaudit.otlp.convert import select_spans
from otaudit.record import seal
from pgcluster import PgServer
from support import otaudit

#: 2026-10-01T00:00:00Z, a Thursday.
Q4_NS = 1_790_812_800 * 1_000_000_000
ATTACKS = ("brute_force_user", "password_spray", "privilege_escalation", "admin_change_off_hours")
OWN_READS = {"audit_log.query"}  # the reads of the commands below, sealed as they run


def fill(data: Path, store_url: str | None, days: int) -> QuarterFacts:
    """A new ledger in ``data`` (or at ``store_url``) holding ``days`` of the quarter."""
    datadir.check(data, create=True)
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        return fill_quarter(store, key, key.name, Q4_NS, days)
    finally:
        store.close()


def cli_json(*args: str) -> list[dict[str, object]]:
    """The rows an otaudit command prints with ``--format json``."""
    done = otaudit(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, QuarterFacts]:
    """A whole quarter at scale 1 in a SQLite ledger."""
    data = tmp_path_factory.mktemp("quarter") / "data"
    return data, fill(data, None, 92)


def test_a_quarter_is_sized_and_signed_as_promised(quarter: tuple[Path, QuarterFacts]) -> None:
    _, facts = quarter
    assert 20_000 <= facts.records <= 40_000
    assert facts.tree_size == facts.records
    assert facts.end_ns - facts.start_ns == 92 * DAY
    assert facts.checkpoint_sizes[-1] == facts.tree_size
    assert list(facts.checkpoint_sizes) == sorted(set(facts.checkpoint_sizes))
    assert sum(facts.actions.values()) == facts.records
    assert facts.actions["read"] > facts.records / 2  # the bulk of the volume
    for action in ("login", "mfa_challenge", "mfa_verify", "user_create", "user_delete",
                   "user_deactivate", "api_token_create", "api_token_revoke", "role_update",
                   "config_change", "deploy"):  # fmt: skip
        assert facts.actions.get(action, 0) > 0, action
    assert facts.alerts_raised == facts.actions["otaudit.alert"]
    assert 0 < facts.alerts_triaged == facts.actions["otaudit.alert_triage"]


def test_the_ledger_verifies(quarter: tuple[Path, QuarterFacts]) -> None:
    data, facts = quarter
    done = otaudit("verify", "--data", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"tree size {facts.tree_size}" in done.stdout
    assert f"{len(facts.checkpoint_sizes)} signed checkpoints" in done.stdout


def test_the_ledger_counts_what_the_facts_say(quarter: tuple[Path, QuarterFacts]) -> None:
    data, facts = quarter
    rows = cli_json("sql", "--data", str(data),
                    "SELECT action, count(*) AS n FROM audit_records GROUP BY action")  # fmt: skip
    held = {str(r["action"]): r["n"] for r in rows}
    assert {a: n for a, n in held.items() if a not in OWN_READS} == facts.actions
    rows = cli_json("sql", "--data", str(data), "SELECT min(received_at) AS first, "
                    "max(received_at) AS last FROM audit_records WHERE action <> "
                    "'audit_log.query'")  # fmt: skip
    assert str(rows[0]["first"]) >= "2026-10-01T" and str(rows[0]["last"]) < "2027-01-01T"


def test_the_attacks_raise_alerts_that_are_triaged(quarter: tuple[Path, QuarterFacts]) -> None:
    data, facts = quarter
    alerts = cli_json("sql", "--data", str(data),
                      "SELECT attributes['audit.alert.id'] AS id, "
                      "attributes['audit.alert.rule'] AS rule, received_at FROM audit_records "
                      "WHERE action = 'otaudit.alert'")  # fmt: skip
    triage = cli_json("sql", "--data", str(data),
                      "SELECT attributes['audit.alert.id'] AS id, received_at, "
                      "attributes['audit.alert.decision'] AS decision FROM audit_records "
                      "WHERE action = 'otaudit.alert_triage'")  # fmt: skip
    by_rule = Counter(str(a["rule"]) for a in alerts)
    months = 3
    assert all(by_rule[rule] >= months for rule in ATTACKS), by_rule
    raised = {str(a["id"]): str(a["received_at"]) for a in alerts}
    for t in triage:  # each triage is of an alert in the ledger, and after it
        assert str(t["received_at"]) > raised[str(t["id"])]
    attack_ids = {str(a["id"]) for a in alerts if a["rule"] in ATTACKS}
    assert attack_ids <= {str(t["id"]) for t in triage}
    assert len(triage) == facts.alerts_triaged
    assert {"resolved", "escalated"} <= {str(t["decision"]) for t in triage}


def test_detect_finds_what_was_sealed(quarter: tuple[Path, QuarterFacts]) -> None:
    """``otaudit detect`` over the period finds the alerts the fill sealed as it went."""
    data, facts = quarter
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(facts.start_ns // 10**9))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(facts.end_ns // 10**9))
    found = cli_json("detect", "--data", str(data), "--since", since, "--until", until)
    sealed = cli_json("sql", "--data", str(data), "SELECT attributes['audit.alert.id'] AS id "
                      "FROM audit_records WHERE action = 'otaudit.alert'")  # fmt: skip
    assert {str(f["id"]) for f in found} == {str(s["id"]) for s in sealed}


def test_the_lost_numbers_show_in_gaps(quarter: tuple[Path, QuarterFacts]) -> None:
    data, _ = quarter
    done = otaudit("gaps", "--data", str(data), "--format", "json")
    assert done.returncode == 1, done.stderr
    short = [r for r in json.loads(done.stdout) if r["missing_count"]]
    assert len(short) == 1
    assert str(short[0]["producer"]).startswith(f"{GAP_SERVICE}/")
    assert short[0]["missing_count"] == GAP_SIZE
    assert short[0]["missing"] == f"{GAP_AT}-{GAP_AT + GAP_SIZE - 1}"


def test_outside_access_is_marked() -> None:
    acts = list(quarter_acts(Q4_NS, 14))
    zones = Counter(str(a.attributes.get("audit.network_zone")) for a in acts
                    if a.attributes["audit.action"] == "login")  # fmt: skip
    assert zones["internal"] > zones["vpn"] > 0 and zones["external"] > 0
    for a in acts:
        if a.attributes.get("audit.network_zone") in ("vpn", "external"):
            assert not str(a.attributes["client.address"]).startswith("10.")
    assert [a.received_ns for a in acts] == sorted(a.received_ns for a in acts)


def test_the_direct_seal_is_the_seal_of_the_span() -> None:
    """``seal_act`` builds the canonical span without protobuf: the same bytes as
    ``select_spans`` gives for that span."""
    trace_id, span_id = bytes(range(16)), bytes(range(8))
    for act in list(quarter_acts(Q4_NS, 14))[::997]:
        request = ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        resource.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value=act.service))
        )
        span = resource.scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = trace_id, span_id, act.name
        span.start_time_unix_nano = act.time_ns
        span.end_time_unix_nano = act.time_ns + 1_000_000
        for k, v in act.attributes.items():
            value = AnyValue(string_value=v) if isinstance(v, str) else AnyValue(int_value=v)
            span.attributes.append(KeyValue(key=k, value=value))
        ((obj, content),) = select_spans(request, "audit.action").records
        assert seal_act(act, trace_id, span_id) == seal(obj, content, "otlp", act.received_ns)
    assert len({e.leaf for e in entries(list(quarter_acts(Q4_NS, 3))[:50] * 2)}) == 100


def test_a_week_on_postgresql_verifies(tmp_path: Path, pg: PgServer) -> None:
    url = pg.database()
    facts = fill(tmp_path / "data", url, 7)
    assert facts.alerts_raised > 0 and facts.records > 1000
    done = otaudit("verify", "--data", str(tmp_path / "data"), "--store", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"tree size {facts.tree_size}" in done.stdout
