"""The OTLP/gRPC receiver: TraceService, LogsService and MetricsService.

Requests arrive as raw bytes (no deserializer): decoding happens in the
ingest workers, like on HTTP. Errors map through ``otlp.status``:
INVALID_ARGUMENT for bad data, UNAVAILABLE with a ``google.rpc.RetryInfo``
in ``grpc-status-details-bin`` while the ledger cannot take the export (the
OpenTelemetry exporters read it and back off). gzip is handled by gRPC
itself, which takes one gzip member per message (INTERNAL for more, before
otaudit sees it); the message size limit is the same ``max_body_bytes`` as on
HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NoReturn

import grpc

from otaudit.auth import Authenticator, bearer
from otaudit.errors import OtauditError, Overloaded
from otaudit.ingest import COMMIT_WAIT_S, PIPELINE_HEADER, Ingest
from otaudit.otlp.body import PROTOBUF
from otaudit.otlp.status import failure_for
from otaudit.receiver.connections import ConnectionLimits, grpc_options
from otaudit.receiver.responses import export_response, status_message

SERVICES: Final = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def _abort(context: grpc.ServicerContext, ingest: Ingest, exc: OtauditError) -> NoReturn:
    failure = failure_for(exc)
    ingest.metrics.failed_requests.labels("grpc", failure.reason).inc()
    status = status_message(failure, str(exc))
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(failure.grpc_code, str(exc))


def _export(
    ingest: Ingest, authn: Authenticator, kind: str, body: bytes, context: grpc.ServicerContext
) -> Any:
    received_ns = time.time_ns()
    metadata = dict(context.invocation_metadata())
    try:
        authn.check(bearer(metadata.get("authorization")), "ingest")  # type: ignore[arg-type]
        pipeline = ingest.pipeline(metadata.get(PIPELINE_HEADER))  # type: ignore[arg-type]
        prepared = ingest.prepare(kind, PROTOBUF, body, False, pipeline, received_ns).result()
        ingest.commit(prepared).result(timeout=COMMIT_WAIT_S)
    except TimeoutError:
        _abort(
            context, ingest, Overloaded(f"commit did not finish within {COMMIT_WAIT_S:.0f} s", 5)
        )
    except OtauditError as exc:
        _abort(context, ingest, exc)
    return export_response(kind, prepared.rejected, prepared.message)


def _handler(ingest: Ingest, authn: Authenticator, kind: str) -> grpc.GenericRpcHandler[Any, Any]:
    def export(body: bytes, context: grpc.ServicerContext) -> Any:
        return _export(ingest, authn, kind, body, context)

    serialize: Callable[[Any], bytes] = lambda response: response.SerializeToString()  # noqa: E731
    method = grpc.unary_unary_rpc_method_handler(
        export, request_deserializer=None, response_serializer=serialize
    )
    return grpc.method_handlers_generic_handler(SERVICES[kind], {"Export": method})


def build_server(
    ingest: Ingest,
    authn: Authenticator,
    address: str,
    *,
    workers: int = 8,
    credentials: grpc.ServerCredentials | None = None,
    limits: ConnectionLimits | None = None,
) -> tuple[grpc.Server, int]:
    """A gRPC server bound to ``address`` (not started) and the port it got.

    Exports need a token with the ``ingest`` scope in the ``authorization`` metadata
    once any token exists (UNAUTHENTICATED / PERMISSION_DENIED otherwise). ``limits``
    bound connections and their handshakes (see ``receiver.connections``)."""
    limit = ingest.settings.max_body_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otaudit-grpc"),
        handlers=[_handler(ingest, authn, kind) for kind in SERVICES],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 0),
            *grpc_options(limits or ConnectionLimits()),
        ],
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    return server, port
