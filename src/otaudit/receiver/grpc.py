"""The OTLP/gRPC receiver: TraceService, LogsService and MetricsService.

Errors map through ``otlp.status``: INVALID_ARGUMENT for bad data,
UNAVAILABLE with a ``google.rpc.RetryInfo`` in ``grpc-status-details-bin``
while the ledger cannot take the export (the OpenTelemetry exporters read it
and back off). gzip is handled by gRPC itself; the message size limit is the
same ``max_body_bytes`` as on HTTP.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from otaudit.errors import OtauditError, Overloaded
from otaudit.ingest import PIPELINE_HEADER, Ingest
from otaudit.otlp.status import failure_for
from otaudit.receiver.responses import export_response, status_message

_WAIT_S = 60.0


def _abort(context: grpc.ServicerContext, ingest: Ingest, exc: OtauditError) -> NoReturn:
    failure = failure_for(exc)
    ingest.metrics.failed_requests.labels("grpc", failure.reason).inc()
    status = status_message(failure, str(exc))
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(failure.grpc_code, str(exc))


def _export(ingest: Ingest, kind: str, request: Any, context: grpc.ServicerContext) -> Any:
    received_ns = time.time_ns()
    metadata = dict(context.invocation_metadata())
    try:
        pipeline = ingest.pipeline(metadata.get(PIPELINE_HEADER))  # type: ignore[arg-type]
        if kind == "metrics":
            rejected, text = ingest.refuse_metrics(request)
        else:
            selection, future = ingest.accept(kind, request, pipeline, received_ns)
            future.result(timeout=_WAIT_S)
            rejected, text = selection.rejected, selection.error_message
    except TimeoutError:
        _abort(context, ingest, Overloaded(f"commit did not finish within {_WAIT_S:.0f} s", 5))
    except OtauditError as exc:
        _abort(context, ingest, exc)
    return export_response(kind, rejected, text)


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _export(self.ingest, "traces", request, context)


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _export(self.ingest, "logs", request, context)


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _export(self.ingest, "metrics", request, context)


def build_server(ingest: Ingest, address: str, *, workers: int = 8) -> tuple[grpc.Server, int]:
    """A gRPC server bound to ``address`` (not started) and the port it got."""
    limit = ingest.settings.max_body_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otaudit-grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(ingest), server)  # type: ignore[no-untyped-call]
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(ingest), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(ingest), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(address)
    return server, port
