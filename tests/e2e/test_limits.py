"""Attribute limits: records over them are rejected one by one, reported in partial_success."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from support import Server, otaudit


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _request() -> bytes:
    """Three audit spans: one within the limits, one with too many attributes, one too large."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    action = _kv("audit.action", AnyValue(string_value="login"))
    for n, extra in enumerate(
        [
            [_kv("user.id", AnyValue(string_value="alice"))],
            [_kv(f"k{i}", AnyValue(string_value="v")) for i in range(5)],
            [_kv("blob", AnyValue(array_value=ArrayValue(
                values=[AnyValue(string_value="x" * 40) for _ in range(3)])))],
        ]
    ):  # fmt: skip
        span = spans.add(trace_id=(n + 1).to_bytes(16, "big"), span_id=(n + 1).to_bytes(8, "big"),
                         name="login", start_time_unix_nano=1_764_288_000_000_000_000)  # fmt: skip
        span.attributes.extend([action, *extra])
    return request.SerializeToString()


def test_records_over_the_limits_are_rejected_and_reported(tmp_path: Path) -> None:
    limits = ["--max-attributes", "5", "--max-attribute-bytes", "100"]
    server = Server(tmp_path / "data", extra_args=limits)
    server.start()
    try:
        response = httpx.post(f"{server.http_url}/v1/traces", content=_request(), timeout=30,
                              headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        assert response.status_code == 200
        answer = ExportTraceServiceResponse.FromString(response.content)
        assert answer.partial_success.rejected_spans == 2
        assert answer.partial_success.error_message == (
            "2 span record(s) rejected: "
            "resource_spans[0].scope_spans[0].spans[1]: 6 attributes, over the limit of 5; "
            "resource_spans[0].scope_spans[0].spans[2]: attribute 'blob' is 135 bytes, "
            "over the limit of 100"
        )
        with grpc.insecure_channel(server.grpc_endpoint) as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=None,  # _request() is serialized already
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
            again = export(_request(), timeout=30)
        assert again.partial_success.rejected_spans == 2  # the first span: already held
        metrics = server.metrics()
        assert metrics['otaudit_records_rejected_total{signal="span"}'] == 4
    finally:
        server.stop()
    count = otaudit("sql", "--data", str(server.data), "--format", "csv",
                    "SELECT count(*) AS n FROM audit_spans")  # fmt: skip
    assert count.stdout.splitlines() == ["n", "1"]
