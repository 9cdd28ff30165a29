"""OTLP export responses and error statuses, encoded for either transport."""

from __future__ import annotations

from typing import Any, Final

import orjson
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otaudit.otlp.status import Failure

RESPONSE_TYPES: Final[dict[str, Any]] = {
    "traces": (ExportTraceServiceResponse, "rejected_spans", "rejectedSpans"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records", "rejectedLogRecords"),
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points", "rejectedDataPoints"),
}


def export_response(otlp_signal: str, rejected: int, message: str) -> Any:
    """The protobuf export response, with ``partial_success`` when something was rejected."""
    cls, field, _ = RESPONSE_TYPES[otlp_signal]
    response = cls()
    if rejected or message:
        setattr(response.partial_success, field, rejected)
        response.partial_success.error_message = message
    return response


def export_response_json(otlp_signal: str, rejected: int, message: str) -> bytes:
    """The OTLP/JSON export response (64-bit counts as strings, lowerCamelCase names)."""
    _, _, json_field = RESPONSE_TYPES[otlp_signal]
    if not (rejected or message):
        return b"{}"
    return orjson.dumps({"partialSuccess": {json_field: str(rejected), "errorMessage": message}})


def status_message(failure: Failure, message: str) -> Any:
    """A ``google.rpc.Status`` for a failure, with RetryInfo when the client should retry."""
    status = status_pb2.Status(code=failure.grpc_code.value[0], message=message)
    if failure.retry_after_s is not None:
        info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=failure.retry_after_s))
        status.details.add().Pack(info)
    return status


def status_json(failure: Failure, message: str) -> bytes:
    """The OTLP/JSON form of ``google.rpc.Status`` (details omitted)."""
    return orjson.dumps({"code": failure.grpc_code.value[0], "message": message})
