"""Detection in ``otaudit serve``: traffic through the SDK exporters, alerts sealed as records,
sent to a webhook (retried) and exported over OTLP to another otaudit, listed and triaged with
the CLI; ``otaudit detect`` over the same ledger finds exactly the same alerts."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from detect_traffic import DAY, Act, anchor, background, scenarios
from otaudit.demo import free_port
from otaudit.detect.alerts import read_alerts
from otaudit.store.search import SEARCH_COLUMNS, SearchFilter
from otaudit.store.sqlite import SQLiteStore
from pgcluster import PgServer
from polling import wait_until
from support import KeepSpans, Server, otaudit

NOW = time.time_ns()
START = NOW - 10 * DAY


class Hook(BaseHTTPRequestHandler):
    """A webhook that fails the first two deliveries with 503, then keeps what it gets."""

    received: ClassVar[list[dict[str, Any]]] = []
    headers_seen: ClassVar[list[str]] = []
    signatures: ClassVar[list[tuple[str, bytes]]] = []
    attempts: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.attempts += 1
        if cls.attempts <= 2:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        cls.received.append(json.loads(body))
        cls.headers_seen.append(self.headers.get("Authorization", ""))
        cls.signatures.append((self.headers.get("X-Otaudit-Signature", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received, Hook.headers_seen, Hook.signatures, Hook.attempts = [], [], [], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/hooks/otaudit"
    httpd.shutdown()
    httpd.server_close()


def send(server: Server, acts: list[Act]) -> None:
    """Send the acts as spans, in time order: accounts-api over OTLP/HTTP, the rest over gRPC."""
    providers: dict[str, tuple[TracerProvider, KeepSpans]] = {}
    for act in sorted(acts, key=lambda a: a.time_ns):
        if act.service not in providers:
            keep = KeepSpans()
            provider = TracerProvider(resource=Resource.create({"service.name": act.service}))
            provider.add_span_processor(keep)
            providers[act.service] = (provider, keep)
        provider, keep = providers[act.service]
        span = provider.get_tracer("traffic").start_span(
            act.name, start_time=act.time_ns, attributes=act.attributes
        )
        span.end(end_time=act.time_ns + 1_000_000)
    http = HttpSpanExporter(endpoint=f"{server.http_url}/v1/traces", timeout=30)
    grpc = GrpcSpanExporter(endpoint=server.grpc_endpoint, insecure=True, timeout=30)
    spans = sorted(
        (s for _, keep in providers.values() for s in keep.spans), key=lambda s: s.start_time or 0
    )
    for at in range(0, len(spans), 400):
        chunk = spans[at : at + 400]
        for exporter, mine in ((http, True), (grpc, False)):
            batch = [
                s
                for s in chunk
                if (s.resource.attributes["service.name"] == "accounts-api") == mine
            ]
            if batch:
                assert exporter.export(batch) == SpanExportResult.SUCCESS
    http.shutdown()  # type: ignore[no-untyped-call]
    grpc.shutdown()


def alert_ids(data: Path) -> set[str]:
    store = SQLiteStore(data / "ledger.db", readonly=True)
    try:
        return {a.alert_id for a in read_alerts(store)}
    finally:
        store.close()


def exported(data: Path) -> set[str]:
    """The alert ids among the records of another ledger (as the OTLP export sent them)."""
    store = SQLiteStore(data / "ledger.db", readonly=True)
    try:
        found = store.search(SearchFilter({"action": ("otaudit.alert",)}))
        return {row[SEARCH_COLUMNS.index("target")] for row in found}
    finally:
        store.close()


def tamper(data: Path, table: str, update: str) -> None:
    """Change a stopped server's ledger behind its back (its append-only trigger dropped)."""
    conn = sqlite3.connect(data / "ledger.db", isolation_level=None)
    try:
        conn.execute(f"DROP TRIGGER {table}_no_update")
        conn.execute(update)
    finally:
        conn.close()


def test_alerts_are_sealed_sent_listed_and_triaged(tmp_path: Path, webhook: str) -> None:
    collector = Server(tmp_path / "collector").start()  # another otaudit receives the OTLP export
    secret, headers = tmp_path / "webhook.secret", tmp_path / "webhook.headers"
    secret.write_text("8f2bd1e0c55a4f3e9c1d7a6b\n")
    headers.write_text("Authorization: Bearer s3cret\n")
    secret.chmod(0o600)
    headers.chmod(0o600)
    args = [
        "--alert-webhook",
        webhook,
        "--alert-webhook-header-file",
        str(headers),
        "--alert-webhook-secret-file",
        str(secret),
        "--alert-otlp-endpoint",
        f"{collector.http_url}/v1/logs",
    ]
    server = Server(tmp_path / "data", detect=True, extra_args=args).start()
    try:
        acts = background(START, NOW, heartbeat_s=None)
        for scenario in scenarios(anchor(START, NOW)).values():
            acts += scenario
        send(server, acts)

        # The same ledger judged from history: the findings the server must also have found.
        history = otaudit(
            "detect", "--data", str(server.data), "--since", "10d", "--format", "json"
        )
        assert history.returncode == 0, history.stderr
        findings = json.loads(history.stdout)
        expected = {f["id"] for f in findings}
        rules = {f["rule"] for f in findings}
        assert rules == {
            "brute_force_user",
            "password_spray",
            "failures_then_success",
            "privilege_escalation",
            "admin_change_off_hours",
            "mass_access",
            "sensitive_new_reader",
            "new_client_address",
        }  # the verification_failed scenario is otaudit's own record: a client's is not
        assert wait_until(lambda: alert_ids(server.data) == expected), "streaming found otherwise"
        metrics = server.metrics()
        assert metrics['otaudit_alerts_total{rule="brute_force_user",severity="high"}'] == 1

        # Sent: every alert once to the webhook (after two refused attempts) and to the collector.
        assert wait_until(lambda: len(Hook.received) == len(expected))
        assert {h["id"] for h in Hook.received} == expected and Hook.attempts == len(expected) + 2
        assert set(Hook.headers_seen) == {"Bearer s3cret"}
        for signature, body in Hook.signatures:  # the receiver can check each body
            digest = hmac.new(b"8f2bd1e0c55a4f3e9c1d7a6b", body, hashlib.sha256).hexdigest()
            assert signature == f"sha256={digest}"
        brute = next(h for h in Hook.received if h["rule"] == "brute_force_user")
        assert brute["severity"] == "high" and brute["count"] == 20
        assert brute["summary"] == "20 failed logins for account u05 within 60m"
        assert len(brute["evidence_seqs"]) == 20 and isinstance(brute["seq"], int)
        # The collector keeps them as records a client sent (pipeline otlp): evidence
        # elsewhere, not alerts of its own ledger.
        assert wait_until(lambda: exported(collector.data) == expected)
        assert alert_ids(collector.data) == set()

        # Recording the history run's findings adds nothing: the ledger holds each alert once.
        again = otaudit("detect", "--data", str(server.data), "--since", "10d", "--record")
        assert again.returncode == 0, again.stderr
        assert ", 0 new alert(s) sealed" in again.stderr

        # Triage: who, when, the decision and a note, sealed; the listing follows.
        brute_id = brute["id"]

        def ack(alert: str, decision: str, note: str) -> subprocess.CompletedProcess[str]:
            return otaudit("alerts", "ack", alert, "--data", str(server.data),
                           "--decision", decision, "--note", note)  # fmt: skip

        def listing(*options: str) -> list[dict[str, Any]]:
            shown = otaudit("alerts", "--data", str(server.data), "--format", "json", *options)
            return json.loads(shown.stdout)  # type: ignore[no-any-return]

        done = ack(brute_id[:8], "false_positive", "pen test, ticket SEC-12")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"alert {brute_id} (brute_force_user): false_positive by ")
        mine = next(a for a in listing() if a["id"] == brute_id)
        assert mine["state"] == "false_positive"
        (decision,) = mine["triage"]
        assert decision["note"] == "pen test, ticket SEC-12" and decision["actor"]
        assert {a["id"] for a in listing("--state", "open")} == expected - {brute_id}
        table = otaudit("alerts", "--data", str(server.data), "--state", "closed")
        assert brute_id in table.stdout and "1 alert(s), 0 open" in table.stdout

        # The evidence: the records that make the alert, from the ledger.
        shown = otaudit("alerts", "show", brute_id, "--data", str(server.data), "--format", "json")
        assert shown.returncode == 0, shown.stderr
        detail = json.loads(shown.stdout)
        assert detail["group"] == {"actor": "u05"} and detail["state"] == "false_positive"
        assert len(detail["evidence"]) == 20
        assert {(r["action"], r["actor"], r["result"]) for r in detail["evidence"]} == {
            ("login", "u05", "failure")
        }
        table = otaudit("alerts", "show", brute_id[:10], "--data", str(server.data))
        assert f"alert {brute_id} [high] brute_force_user" in table.stdout
        assert "false_positive: pen test, ticket SEC-12" in table.stdout

        unknown = ack("ffffffffffff", "resolved", "x")
        assert unknown.returncode == 2
        assert "no alert 'ffffffffffff' in the ledger" in unknown.stderr
        no_note = ack(brute_id, "resolved", "  ")
        assert no_note.returncode == 2 and "--note" in no_note.stderr
        bad = ack(brute_id, "ignored", "x")
        assert bad.returncode == 2 and "'ignored' is not one of" in bad.stderr

        # A restart judges the last 30 days again: the same alerts, nothing new sent.
        server.stop()
        sent = len(Hook.received)
        server.start()
        size = int(server.metrics()["otaudit_tree_size"])
        assert wait_until(lambda: server.metrics()["otaudit_detect_position"] >= size)
        time.sleep(0.5)
        assert alert_ids(server.data) == expected and len(Hook.received) == sent
    finally:
        server.stop()
        collector.stop()
    verify = otaudit("verify", "--data", str(server.data))
    assert verify.returncode == 0, verify.stderr


def test_a_failed_verification_raises_an_alert(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    send(server, background(NOW - DAY, NOW, heartbeat_s=None)[:50])
    server.stop()
    tamper(server.data, "records", "UPDATE records SET actor = 'mallory' WHERE seq = 7")
    failed = otaudit("verify", "--data", str(server.data))
    assert failed.returncode == 1 and failed.stderr.startswith("FAILED: seq 7")
    found = otaudit("detect", "--data", str(server.data), "--since", "1h", "--format", "jsonl")
    assert found.returncode == 0, found.stderr
    (finding,) = [json.loads(line) for line in found.stdout.splitlines()]
    assert finding["rule"] == "verification_failed" and finding["severity"] == "critical"
    assert finding["summary"].startswith("a verification of the ledger failed: seq 7")


def test_detection_on_a_postgresql_ledger(pg: PgServer, tmp_path: Path) -> None:
    url = pg.database()
    server = Server(tmp_path / "data", detect=True, extra_args=["--store", url]).start()
    try:
        a = anchor(NOW - 10 * DAY, NOW)
        send(server, scenarios(a)["brute_force_user"] + scenarios(a)["privilege_escalation"])

        def listed() -> list[dict[str, Any]]:
            shown = otaudit(
                "alerts", "--store", url, "--data", str(server.data), "--format", "json"
            )
            rows: list[dict[str, Any]] = json.loads(shown.stdout)
            return rows

        alerts = wait_until(lambda: len(listed()) == 3 and listed())
        assert alerts, listed()
        assert sorted(a["rule"] for a in alerts) == [
            "brute_force_user",
            "privilege_escalation",
            "privilege_escalation",
        ]
    finally:
        server.stop()


def test_a_server_that_refuses_to_sign_raises_an_alert(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", detect=True).start()
    send(server, background(NOW - DAY, NOW, heartbeat_s=None)[:40])
    server.stop()
    # The subtree of leaves 32..39: part of the signed root at size 40, and of any proof from it.
    tamper(server.data, "tree_nodes",
           "UPDATE tree_nodes SET hash = zeroblob(32) WHERE level = 3 AND idx = 4")  # fmt: skip
    server.start()
    try:
        send(server, background(NOW - DAY, NOW, heartbeat_s=None)[40:45])

        def alerts() -> list[dict[str, Any]]:
            shown = otaudit("alerts", "--data", str(server.data), "--format", "json")
            return [a for a in json.loads(shown.stdout) if a["rule"] == "verification_failed"]

        (alert,) = wait_until(alerts)
        assert alert["severity"] == "critical"
        assert "not consistent with the checkpoint" in alert["summary"]
        # Once: the refusal record grows the tree, and every later attempt fails alike.
        send(server, background(NOW - DAY, NOW, heartbeat_s=None)[45:50])
        time.sleep(1)
        assert len(alerts()) == 1
    finally:
        server.stop()
