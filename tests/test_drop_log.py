"""Audit data that did not arrive is said in the server's log, at a bounded rate: a
misspelt ``audit.action``, a wrong path, a bad token (issue: day-to-day use, "audit data
can vanish with no hint")."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otaudit.droplog import MAX_ADDRESSES, DropLog
from polling import wait_for_text
from support import Server, otaudit

PROTOBUF = "application/x-protobuf"


def _request(*attribute_sets: dict[str, str]) -> bytes:
    spans = [
        Span(
            trace_id=(n + 1).to_bytes(16, "big"),
            span_id=(n + 1).to_bytes(8, "big"),
            name="user.update",
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_000_000_000_001,
            attributes=[
                KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()
            ],
        )
        for n, attributes in enumerate(attribute_sets)
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def test_lost_audit_data_is_named_in_the_log_with_the_client_address(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert otaudit("migrate", "--data", str(data)).returncode == 0  # tokens before serving
    created = otaudit("token", "create", "--data", str(data), "--scope", "ingest")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    log_file = tmp_path / "server.log"
    srv = Server(data, log_file=log_file).start()
    try:
        auth = {"authorization": f"Bearer {token}", "content-type": PROTOBUF}
        with httpx.Client(base_url=srv.http_url, timeout=30) as http:
            typo = _request({"audit.acton": "user.update", "audit.target": "u1"}, {"x": "y"})
            assert http.post("/v1/traces", content=typo, headers=auth).status_code == 200
            wrong_path = http.post("/v1/trace", content=typo, headers=auth)
            assert wrong_path.status_code == 404
            no_token = http.post("/v1/traces", content=typo, headers={"content-type": PROTOBUF})
            assert no_token.status_code == 401
            log = wait_for_text(log_file, "audit.acton", "(404)", "(401", "without the audit")
    finally:
        srv.stop()
    assert (
        "1 record(s) carrying audit attributes but not the one that selects them were not"
        " kept: 1 from 127.0.0.1; audit.action is missing; attributes seen: audit.acton,"
        " audit.target" in log
    )
    assert "1 record(s) without the audit attribute were not kept: 1 from 127.0.0.1" in log
    assert "does not serve (404): 1 from 127.0.0.1; POST /v1/trace" in log
    assert "missing or unknown token (401, UNAUTHENTICATED): 1 from 127.0.0.1" in log


def test_drop_counts_reach_metrics(server: Server) -> None:
    body = _request({"audit.acton": "x"}, {"audit.action": "x"}, {"plain": "y"})
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        assert http.post("/v1/traces", content=body, headers={"content-type": PROTOBUF})
        assert http.post("/v1/nope", content=body).status_code == 404
    metrics = server.metrics()
    assert (
        metrics['otaudit_records_dropped_total{reason="audit_action_missing",signal="span"}'] == 1
    )
    assert metrics['otaudit_records_dropped_total{reason="not_audit",signal="span"}'] == 1
    assert metrics['otaudit_requests_failed_total{reason="not_found",transport="http"}'] == 1


def test_the_first_is_said_at_once_the_rest_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drops = DropLog(interval_s=0.3)
    with caplog.at_level(logging.INFO, "otaudit.drops"):
        drops.note("not_found", "10.0.0.1", 1, "POST /v1/trace")
        assert len(caplog.records) == 1
        for n in range(50):
            drops.note("not_found", f"10.0.0.{n % 7}", 2, "POST /v1/trace\x1b[2J")
        drops.note("unauthenticated", "10.0.0.9")
        assert len(caplog.records) == 2  # one line per cause so far
        deadline = time.monotonic() + 5
        while len(caplog.records) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    summary = caplog.records[2].getMessage()
    assert summary.startswith("100 request(s) went to a path this listener does not serve")
    assert "in the last 0 s" in summary or "in the last 1 s" in summary
    # The busiest addresses first, then how many more; control characters shown escaped.
    assert ": 16 from 10.0.0.0, 14 from 10.0.0.1, " in summary
    assert "and 2 more address(es)" in summary
    assert "\x1b" not in summary and "POST /v1/trace" in summary
    drops.close()


def test_addresses_held_per_cause_are_bounded() -> None:
    drops = DropLog(interval_s=60)
    for n in range(MAX_ADDRESSES * 3):
        drops.note("not_audit", f"10.1.{n // 256}.{n % 256}", 1)
    window = drops._windows["not_audit"]
    assert len(window.addresses) == MAX_ADDRESSES + 1  # and "other addresses"
    assert window.total == MAX_ADDRESSES * 3 - 1  # the first was said at once
    drops.close()
    assert "not_audit" not in drops._windows
