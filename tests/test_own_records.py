"""otaudit's own records are its own (DESIGN invariant 9): a client can neither stand in for
one (the dedup key covers the pipeline) nor pass for one (every reader of own records selects
pipeline ``otaudit``). The attacks of issue 13 (F2, F8) against a real ``otaudit serve``."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import rfc8785
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit.access import os_reader
from otaudit.demo import free_port
from otaudit.detect.alerts import alert_request
from otaudit.detect.engine import Engine
from otaudit.detect.event import EVENT_COLUMNS, Event
from otaudit.detect.rules import load_rules
from otaudit.detect.state import Finding
from otaudit.otlp.convert import select_logs, select_spans
from otaudit.record import Entry, content_key, parse_sealed, seal
from otaudit.store.sqlite import SQLiteStore, stored_bytes_reader
from polling import wait_until
from support import Server, audit_request, otaudit, post
from test_record import RECEIVED_NS, golden_request

DOCS = Path(__file__).resolve().parent.parent / "docs"
MINUTE = 60 * 1_000_000_000


# -- the dedup key ------------------------------------------------------------------------


def _golden(pipeline: str) -> tuple[Entry, bytes]:
    ((obj, content),) = select_spans(golden_request(), "audit.action").records
    return seal(obj, content, pipeline, RECEIVED_NS), content


def test_the_dedup_key_covers_the_pipeline() -> None:
    client, content = _golden("otlp")
    own, _ = _golden("otaudit")
    retried = seal(*select_spans(golden_request(), "audit.action").records[0], "otlp", 1)
    assert client.dedup_key != own.dedup_key  # a client's copy is not otaudit's record
    assert retried.dedup_key == client.dedup_key  # a retry (same pipeline, later) is a copy
    # As docs/record-format.md says, with RFC 8785 and SHA-256 alone:
    envelope = json.loads(client.sealed)
    del envelope["received_at"]
    assert hashlib.sha256(rfc8785.dumps(envelope)).digest()[:16] == client.dedup_key
    assert client.dedup_key.hex() == "008e3d21b1a93e909372b127b401356a"
    assert "`008e3d21b1a93e909372b127b401356a`" in (DOCS / "record-format.md").read_text()
    assert content_key(content) not in (client.dedup_key, own.dedup_key)


def _set_dedup_key(data: Path, seq: int, key: Callable[[bytes], bytes]) -> None:
    """Give a stopped server's record ``seq`` the dedup key ``key(sealed bytes)``."""
    conn = sqlite3.connect(data / "ledger.db", isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS records_no_update")
        stored, at, body = conn.execute(  # its resource is kept once: splice it back
            "SELECT r.sealed, r.resource_at, s.body FROM records r"
            " LEFT JOIN resources s ON s.hash = r.resource_hash WHERE r.seq = ?",
            (seq,),
        ).fetchone()
        stored = stored_bytes_reader(conn).decode(bytes(stored))  # it may be compressed
        sealed = bytes(stored if at is None else stored[:at] + body + stored[at:])
        conn.execute("UPDATE records SET dedup_key = ? WHERE seq = ?", (key(sealed), seq))
    finally:
        conn.close()


def test_verify_accepts_the_key_records_were_sealed_with_before(server: Server) -> None:
    assert post(server, audit_request(3)).status_code == 200
    assert server.stop() == 0
    # Sealed before the key covered the pipeline: a record keeps its key, and verifies.
    _set_dedup_key(server.data, 1, lambda sealed: content_key(parse_sealed(sealed)[1]))
    verified = otaudit("verify", "--data", str(server.data))
    assert verified.returncode == 0, verified.stderr
    # Any other key is refused.
    _set_dedup_key(server.data, 2, lambda sealed: hashlib.sha256(sealed).digest()[:16])
    failed = otaudit("verify", "--data", str(server.data))
    assert failed.returncode == 1
    assert failed.stderr.startswith("FAILED: seq 2: dedup key does not match the sealed record")


def test_a_retry_across_the_upgrade_is_sealed_again(tmp_path: Path) -> None:
    entry, content = _golden("otlp")
    store = SQLiteStore(tmp_path / "ledger.db")
    try:
        store.append([Entry(entry.sealed, entry.leaf, content_key(content), entry.columns)])
        assert store.append([entry]).seqs == [1]  # the same record, keyed as now
        assert store.append([entry]).seqs == [None]  # and from then on held once
    finally:
        store.close()


# -- the attacks, against a real server ---------------------------------------------------


class Hook(BaseHTTPRequestHandler):
    """A webhook that keeps the alerts it is sent."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Server]:
    """A server running the built-in rules, posting its alerts to ``Hook``."""
    Hook.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    hook = f"http://127.0.0.1:{httpd.server_port}/hook"
    server = Server(tmp_path / "data", detect=True, extra_args=["--alert-webhook", hook])
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop()
        httpd.shutdown()
        httpd.server_close()


def _log(request: ExportLogsServiceRequest, t: int, service: str, attrs: dict[str, str]) -> None:
    resource = request.resource_logs.add()
    resource.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=service))
    )
    record = resource.scope_logs.add().log_records.add()
    record.time_unix_nano = record.observed_time_unix_nano = t
    record.event_name = attrs["audit.action"]
    record.attributes.extend(KeyValue(key=k, value=AnyValue(string_value=v))
                             for k, v in attrs.items())  # fmt: skip


def _send(server: Server, request: ExportLogsServiceRequest) -> None:
    response = httpx.post(f"{server.http_url}/v1/logs", content=request.SerializeToString(),
                          headers={"Content-Type": "application/x-protobuf"},
                          timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    assert b"rejected" not in response.content


def _judged(server: Server) -> bool:
    """Whether the detector has judged every record sealed so far."""
    metrics = server.metrics()
    return metrics["otaudit_detect_position"] >= metrics["otaudit_tree_size"]


def _alerts(server: Server) -> list[dict[str, Any]]:
    shown = otaudit("alerts", "--data", str(server.data), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def _findings_if_sealed_at(request: ExportLogsServiceRequest, seqs: range) -> list[Finding]:
    """What the built-in rules find in the one record of ``request`` if it is sealed at each
    of ``seqs``: all a client needs to build the alert records (their content is a function
    of the finding)."""
    ((obj, content),) = select_logs(request, "audit.action").records
    columns = seal(obj, content, "otlp", time.time_ns()).columns
    fields = [getattr(columns, name) for name in EVENT_COLUMNS[1:]]
    rules = load_rules()
    return [f for seq in seqs for f in Engine(rules).feed(Event((seq, *fields)))]


def test_a_client_cannot_suppress_an_alert_by_sending_it_first(watched: Server) -> None:
    # F2: a user grants itself admin, and the same request carries the alert record the
    # rules will seal for it, precomputed for every sequence number it might get.
    when = time.time_ns() - MINUTE
    grant = {"audit.action": "role_update", "enduser.id": "mallory", "audit.target_user":
             "mallory", "audit.new_value": "admin", "audit.result": "success"}  # fmt: skip
    role_update = ExportLogsServiceRequest()
    _log(role_update, when, "accounts-api", grant)
    forged = _findings_if_sealed_at(role_update, range(1000))
    attack = ExportLogsServiceRequest()
    attack.CopyFrom(role_update)
    for finding in forged:
        attack.resource_logs.extend(alert_request(finding).resource_logs)
    _send(watched, attack)  # the role update is seq 0, its forged alerts follow

    expected = {f.alert_id: f for f in forged if f.trigger_seq == 0}
    assert "privilege_escalation" in {f.rule.name for f in expected.values()}
    assert wait_until(lambda: len(Hook.received) == len(expected)), Hook.received
    assert {h["id"] for h in Hook.received} == set(expected)
    listed = _alerts(watched)
    assert {a["id"] for a in listed} == set(expected)
    assert all(a["evidence_seqs"] == [0] for a in listed)
    # otaudit's own records with the same content are still one: history adds nothing.
    again = otaudit("detect", "--data", str(watched.data), "--since", "1h", "--record")
    assert again.returncode == 0, again.stderr
    assert f"{len(expected)} finding(s), 0 new alert(s) sealed" in again.stderr
    # The client's records are all sealed, as its own: none was dropped as a copy.
    assert watched.metrics()["otaudit_tree_size"] >= 1 + len(forged) + len(expected)


def _claim(server: Server, attributes: dict[str, str]) -> None:
    """A client's record claiming one of otaudit's own actions, as service ``otaudit``."""
    request = ExportLogsServiceRequest()
    _log(request, time.time_ns() - MINUTE, "otaudit", attributes)
    _send(server, request)


def test_a_clients_failed_verification_raises_no_alert(watched: Server) -> None:
    # F8: only otaudit's own records of a failed verification raise verification_failed.
    failed = {"audit.resource_type": "ledger", "audit.result": "failure"}
    _claim(watched, {"audit.action": "otaudit.verify", "enduser.id": "otaudit-server",
                     "audit.query.error": "checkpoint at tree size 1 is not consistent",
                     **failed})  # fmt: skip
    _claim(watched, {"audit.action": "audit_log.query", "enduser.id": "ceo@example.com",
                     "audit.query.kind": "verify", "audit.query.error": "seq 0: forged",
                     **failed})  # fmt: skip
    # The detector's position moves past a record only once what it found there is
    # sealed, so no waiting beyond it: an alert would be in the ledger already.
    assert wait_until(lambda: _judged(watched))  # the detector has judged both
    assert _alerts(watched) == [] and Hook.received == []


def test_a_clients_read_record_is_not_a_read(watched: Server) -> None:
    # F8: "who read the trail", as docs/querying.md asks it, lists otaudit's reads only.
    _claim(watched, {"audit.action": "audit_log.query", "enduser.id": "ceo@example.com",
                     "audit.resource_type": "audit_log", "audit.query.kind": "sql",
                     "audit.query.text": "SELECT * FROM audit_records",
                     "audit.result": "success"})  # fmt: skip
    assert _alerts(watched) == []  # a read of the trail, recorded
    section = (DOCS / "querying.md").read_text().split("\n## Reading is recorded\n")[1]
    (who_read,) = re.findall(r'^otaudit sql "([^"]*)"$', section, re.M)
    shown = otaudit("sql", "--data", str(watched.data), "--format", "json", who_read)
    assert shown.returncode == 0, shown.stderr
    readers = [(r["actor"], r["kind"]) for r in json.loads(shown.stdout)]
    assert readers == [(os_reader().actor, "alerts")]
