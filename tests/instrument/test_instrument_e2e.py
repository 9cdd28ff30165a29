"""End to end: the helpers' records through stock OTLP exporters into a real otaudit server."""

from __future__ import annotations

import json
import uuid

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otaudit.instrument import actor, audit_log, audit_span, audited, configure
from support import Server, otaudit


def sql(server: Server, statement: str) -> list[dict[str, object]]:
    result = otaudit("sql", "--data", str(server.data), "--format", "json", statement)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_spans_over_http_and_logs_over_grpc_are_sealed_with_actor_and_result(
    server: Server,
) -> None:
    resource = Resource.create({"service.name": "accounts-api"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(HttpSpanExporter(endpoint=f"{server.http_url}/v1/traces"))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(GrpcLogExporter(endpoint=server.grpc_endpoint, insecure=True))
    )
    tracer = tracer_provider.get_tracer("accounts-api")
    producer = f"e2e-{uuid.uuid4()}"
    configure(producer_id=producer)  # a fresh producer: its numbers start at 1

    @audited("role_update", target=lambda user_id, **_: user_id, tracer=tracer)
    def update_role(user_id: str, new_role: str) -> None:
        if new_role == "owner":
            raise PermissionError("only owners appoint owners")

    try:
        with actor("admin-7", roles=["admin"], client_address="203.0.113.7"):
            with audit_span(
                "role_update",
                target="bob",
                resource_type="user_permission",
                old="viewer",
                new="editor",
                tracer=tracer,
            ):
                pass
            with pytest.raises(PermissionError):
                update_role("carol", "owner")
            audit_log(
                "config_change",
                "System configuration changed",
                target="mfa_required",
                old=False,
                new=True,
                logger_provider=logger_provider,
            )
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()

    rows = sql(
        server,
        "SELECT actor, action, target, result, attributes FROM audit_records ORDER BY seq",
    )
    assert [{k: v for k, v in row.items() if k != "attributes"} for row in rows] == [
        {"actor": "admin-7", "action": "role_update", "target": "bob", "result": "success"},
        {"actor": "admin-7", "action": "role_update", "target": "carol", "result": "failure"},
        {
            "actor": "admin-7",
            "action": "config_change",
            "target": "mfa_required",
            "result": "success",
        },
    ]
    attributes = [json.loads(str(row["attributes"])) for row in rows]
    assert attributes[1]["error.type"] == "PermissionError"
    assert attributes[0]["audit.old_value"] == "viewer"
    assert attributes[2]["audit.new_value"] == "true"
    for attrs in attributes:
        assert attrs["client.address"] == "203.0.113.7"
        assert json.loads(attrs["user.roles"]) == ["admin"]
        assert attrs["audit.producer.id"] == producer
    # The auditor's completeness check: this producer's numbers are 1..n, none missing.
    assert sorted(int(a["audit.producer.seq"]) for a in attributes) == [1, 2, 3]
    assert sql(server, "SELECT signal, name FROM audit_logs WHERE pipeline <> 'otaudit'") == [
        {"signal": "log", "name": "System configuration changed"}
    ]

    gaps = otaudit("gaps", "--data", str(server.data), "--producer", producer, "--format", "json")
    assert gaps.returncode == 0, gaps.stdout + gaps.stderr
    (report,) = json.loads(gaps.stdout)
    assert (report["first_seq"], report["last_seq"], report["records"]) == (1, 3, 3)
    assert report["missing_count"] == report["duplicate_count"] == 0

    server.stop()
    verified = otaudit("verify", "--data", str(server.data))
    assert verified.returncode == 0, verified.stderr
