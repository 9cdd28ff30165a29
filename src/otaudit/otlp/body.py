"""HTTP request bodies: content types, gzip with a hard size limit, protobuf decoding."""

from __future__ import annotations

import zlib
from typing import Any, Final

from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otaudit.errors import DecodeError, PayloadTooLarge, UnsupportedMediaType
from otaudit.otlp import otlpjson

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"

REQUEST_TYPES: Final[dict[str, Any]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
_JSON_DECODERS: Final = {
    "traces": otlpjson.decode_traces_json,
    "logs": otlpjson.decode_logs_json,
    "metrics": otlpjson.decode_metrics_json,
}


def media_type(content_type: str | None) -> str:
    """The OTLP encoding named by a Content-Type header (parameters ignored), or 415."""
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt in (PROTOBUF, JSON):
        return mt
    raise UnsupportedMediaType(
        f"Content-Type {content_type or '(none)'!r} is not supported; use {PROTOBUF!r} or {JSON!r}"
    )


def check_encoding(content_encoding: str | None) -> bool:
    """True for gzip, False for identity; 415 for anything else."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return False
    if enc == "gzip":
        return True
    raise UnsupportedMediaType(f"Content-Encoding {content_encoding!r} is not supported; use gzip")


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body, refusing it as soon as the output passes ``max_bytes``.

    The output is produced in bounded steps, so a gzip bomb is refused
    without ever being inflated whole. Concatenated gzip members are allowed.
    """
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, max_bytes + 1 - len(out))
            out += chunk
            while not inflater.eof and len(out) <= max_bytes and inflater.unconsumed_tail:
                out += inflater.decompress(inflater.unconsumed_tail, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise DecodeError(f"gzip body is corrupt: {exc}") from exc
        if len(out) > max_bytes:
            raise PayloadTooLarge(f"body is larger than {max_bytes} bytes after decompression")
        if not inflater.eof:
            raise DecodeError("gzip body is truncated (the stream ends before its trailer)")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def decode(kind: str, media: str, body: bytes) -> Any:
    """Decode an export request body of ``kind`` (traces, logs, metrics)."""
    if media == JSON:
        return _JSON_DECODERS[kind](body)
    try:
        return REQUEST_TYPES[kind].FromString(body)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"body is not a valid OTLP {kind} protobuf message: {exc}") from exc
