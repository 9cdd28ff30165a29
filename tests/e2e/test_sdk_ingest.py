"""End to end through the stock OpenTelemetry SDK exporters (HTTP protobuf and gRPC)."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from support import Server, otaudit


def _exporters(server: Server) -> dict[str, SpanExporter]:
    return {
        "http": HttpSpanExporter(endpoint=f"{server.http_url}/v1/traces"),
        "http-gzip": HttpSpanExporter(
            endpoint=f"{server.http_url}/v1/traces", compression=Compression.Gzip
        ),
        "grpc": GrpcSpanExporter(endpoint=server.grpc_endpoint, insecure=True),
    }


def _sql(server: Server, statement: str) -> list[dict[str, object]]:
    result = otaudit("sql", "--data", str(server.data), "--format", "json", statement)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


@pytest.fixture
def provider_for(server: Server) -> Iterator[dict[str, TracerProvider]]:
    providers = {}
    for name, exporter in _exporters(server).items():
        provider = TracerProvider(resource=Resource.create({"service.name": f"svc-{name}"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers[name] = provider
    yield providers
    for provider in providers.values():
        provider.shutdown()


def test_audit_spans_are_sealed_and_the_rest_dropped(
    server: Server, provider_for: dict[str, TracerProvider]
) -> None:
    for name, provider in provider_for.items():
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("user.role.update") as span:
            span.set_attribute("enduser.id", f"admin-{name}")
            span.set_attribute("audit.action", "role_update")
            span.set_attribute("audit.target_user", "bob")
            span.set_attribute("audit.old_value", "viewer")
            span.set_attribute("audit.new_value", "editor")
            span.set_attribute("audit.resource_type", "user_permission")
            span.set_attribute("audit.result", "success")
        with tracer.start_as_current_span("GET /health"):
            pass

    metrics = server.metrics()
    assert metrics['otaudit_records_received_total{signal="span"}'] == 6
    assert metrics['otaudit_records_sealed_total{signal="span"}'] == 3
    assert metrics['otaudit_records_dropped_total{reason="not_audit",signal="span"}'] == 3

    rows = _sql(
        server,
        "SELECT seq, signal, name, actor, action, target, resource_type, result, service, "
        "trace_id, span_id, timestamp FROM audit_spans ORDER BY seq",
    )
    assert [r["seq"] for r in rows] == [0, 1, 2]
    assert [r["service"] for r in rows] == ["svc-http", "svc-http-gzip", "svc-grpc"]
    assert [r["actor"] for r in rows] == ["admin-http", "admin-http-gzip", "admin-grpc"]
    assert list(rows[0]) == [
        "seq", "signal", "name", "actor", "action", "target", "resource_type", "result",
        "service", "trace_id", "span_id", "timestamp",
    ]  # fmt: skip
    for row in rows:
        assert row["signal"] == "span"
        assert row["name"] == "user.role.update"
        assert (row["action"], row["target"], row["resource_type"], row["result"]) == (
            "role_update", "bob", "user_permission", "success",
        )  # fmt: skip
        assert len(str(row["trace_id"])) == 32 and str(row["trace_id"]).islower()
        assert len(str(row["span_id"])) == 16
        assert str(row["timestamp"]).endswith("Z")

    server.stop()
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 4 records verified")  # 3 spans and the sql read


def test_log_records_with_a_handler_attached_are_sealed(server: Server) -> None:
    for exporter in (
        HttpLogExporter(endpoint=f"{server.http_url}/v1/logs"),
        GrpcLogExporter(endpoint=server.grpc_endpoint, insecure=True),
    ):
        provider = LoggerProvider(resource=Resource.create({"service.name": "config-service"}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        handler = LoggingHandler(logger_provider=provider)
        logger = logging.getLogger("audit.system.test")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.info(
                "System configuration changed",
                extra={
                    "audit.action": "config_change",
                    "audit.changed_by": "alice",
                    "audit.config_keys_modified": ["mfa_required"],
                    "audit.severity": "high",
                },
            )
            logger.info("cache warmed")  # not an audit record
        finally:
            logger.removeHandler(handler)
            provider.shutdown()

    rows = _sql(server, "SELECT signal, name, actor, action, attributes FROM audit_logs")
    assert len(rows) == 2
    for row in rows:
        assert (row["signal"], row["name"], row["actor"], row["action"]) == (
            "log", "System configuration changed", "alice", "config_change",
        )  # fmt: skip
        attributes = json.loads(str(row["attributes"]))
        assert attributes["audit.config_keys_modified"] == '["mfa_required"]'
        assert attributes["audit.severity"] == "high"
    assert server.metrics()['otaudit_records_dropped_total{reason="not_audit",signal="log"}'] == 2


OTLP_JSON = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "hr"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "hand-built"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "name": "employee.terminate",
                            "kind": 2,
                            "startTimeUnixNano": "1764288000000000000",
                            "endTimeUnixNano": 1764288000250000000,
                            "attributes": [
                                {"key": "audit.action", "value": {"stringValue": "terminate"}},
                                {"key": "user.id", "value": {"stringValue": "hr-admin"}},
                                {"key": "audit.target_user", "value": {"stringValue": "dave"}},
                                {"key": "big", "value": {"intValue": "9007199254740993"}},
                                {"key": "ratio", "value": {"doubleValue": "NaN"}},
                                {"key": "blob", "value": {"bytesValue": "AAEC"}},
                            ],
                            "status": {"code": 1},
                            "someFutureField": {"ignored": True},
                        }
                    ],
                }
            ],
        }
    ]
}


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_hand_built_otlp_json(server: Server, gzipped: bool) -> None:
    body = json.dumps(OTLP_JSON).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    response = httpx.post(f"{server.http_url}/v1/traces", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {}

    rows = _sql(server, "SELECT trace_id, span_id, timestamp, actor, target, result, attributes "
                        "FROM audit_spans")  # fmt: skip
    assert rows == [
        {
            "trace_id": "5b8efff798038103d269b633813fc60c",
            "span_id": "eee19b7ec3c1b174",
            "timestamp": "2025-11-28T00:00:00.000000000Z",
            "actor": "hr-admin",
            "target": "dave",
            "result": "success",
            "attributes": json.dumps(
                {
                    "audit.action": "terminate",
                    "audit.target_user": "dave",
                    "big": "9007199254740993",
                    "blob": "AAEC",
                    "ratio": "NaN",
                    "user.id": "hr-admin",
                },
                separators=(",", ":"),
            ),
        }
    ]


def test_retried_export_is_idempotent(server: Server) -> None:
    body = json.dumps(OTLP_JSON).encode()
    for _ in range(3):
        response = httpx.post(
            f"{server.http_url}/v1/traces", content=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 200
    metrics = server.metrics()
    assert metrics['otaudit_records_sealed_total{signal="span"}'] == 1
    assert metrics['otaudit_records_duplicate_total{signal="span"}'] == 2
    assert metrics["otaudit_tree_size"] == 1


def test_restart_keeps_the_ledger_and_continues_the_tree(
    server: Server, provider_for: dict[str, TracerProvider]
) -> None:
    tracer = provider_for["grpc"].get_tracer("test")
    for i in range(5):
        with tracer.start_as_current_span("login") as span:
            span.set_attribute("audit.action", "login")
            span.set_attribute("user.id", f"u{i}")
    server.stop()
    first = _sql(server, "SELECT count(*) AS n FROM audit_records")
    assert first == [{"n": 5}]

    server.start()
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(GrpcSpanExporter(endpoint=server.grpc_endpoint, insecure=True))
    )
    with provider.get_tracer("test").start_as_current_span("logout") as span:
        span.set_attribute("audit.action", "logout")
    provider.shutdown()
    server.stop()

    assert _sql(server, "SELECT seq, action FROM audit_records WHERE seq >= 4") == [
        {"seq": 4, "action": "login"},
        {"seq": 5, "action": "audit_log.query"},  # the first count(*) above, itself recorded
        {"seq": 6, "action": "logout"},
    ]
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 0, result.stderr
    assert "tree size 8, " in result.stdout  # and the second read
    # The first read is signed by the server's next start; the second only by a later one:
    # the command line never signs, though this reader holds the key.
    assert "latest at size 7\n" in result.stdout
