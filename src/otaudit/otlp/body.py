"""HTTP request bodies: content types, gzip with a hard size limit, protobuf decoding."""

from __future__ import annotations

import time
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


#: Concatenated gzip members one body may hold (RFC 1952 allows several; exporters send one).
MAX_GZIP_MEMBERS: Final = 64
#: Wall-clock time one body may take to decompress (16 MiB takes about 0.1 s).
GUNZIP_TIMEOUT_S: Final = 2.0
#: Compressed input handed to zlib per step: what is copied when a member ends stays small.
_GZIP_INPUT_STEP: Final = 64 * 1024


def gunzip(
    data: bytes,
    max_bytes: int,
    *,
    max_members: int = MAX_GZIP_MEMBERS,
    timeout_s: float = GUNZIP_TIMEOUT_S,
) -> bytes:
    """Inflate a gzip body (RFC 1952), bounding the output, the members and the time taken.

    The input is fed to zlib in steps of at most 64 KiB and the output asked for
    in steps of at most what is left under ``max_bytes``, so the work done per
    step is bounded and neither a gzip bomb nor a body of many tiny members is
    ever inflated or copied whole. Raises ``PayloadTooLarge`` (413) once the
    output passes ``max_bytes`` or decompression outlasts ``timeout_s``, and
    ``DecodeError`` (400) for a corrupt or truncated body or more than
    ``max_members`` concatenated members.
    """
    deadline = time.monotonic() + timeout_s
    out = bytearray()
    view = memoryview(data)
    offset = 0  # how much of ``data`` has been handed to zlib
    carried = b""  # input handed to the previous member that belongs to the next one
    members = 0
    try:
        while True:
            members += 1
            if members > max_members:
                raise DecodeError(f"gzip body has more than {max_members} members")
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            while not inflater.eof:
                if time.monotonic() > deadline:
                    raise PayloadTooLarge(f"gzip body takes longer than {timeout_s:g} s to inflate")
                step: bytes | memoryview = inflater.unconsumed_tail or carried
                carried = b""
                if not step and offset < len(data):
                    step = view[offset : offset + _GZIP_INPUT_STEP]
                    offset += len(step)
                # An empty step drains output zlib holds back; none then means truncated.
                chunk = inflater.decompress(step, max_bytes + 1 - len(out))
                if not step and not chunk and not inflater.eof:
                    raise DecodeError("gzip body is truncated (the stream ends before its trailer)")
                out += chunk
                if len(out) > max_bytes:
                    raise PayloadTooLarge(
                        f"body is larger than {max_bytes} bytes after decompression"
                    )
            carried = inflater.unused_data
            if not carried and offset == len(data):
                return bytes(out)
    except zlib.error as exc:
        raise DecodeError(f"gzip body is corrupt: {exc}") from exc


def decode(otlp_signal: str, media: str, body: bytes) -> Any:
    """Decode an export request body of the OTLP signal ``otlp_signal`` (traces, logs, metrics)."""
    if media == JSON:
        return _JSON_DECODERS[otlp_signal](body)
    try:
        return REQUEST_TYPES[otlp_signal].FromString(body)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(
            f"body is not a valid OTLP {otlp_signal} protobuf message: {exc}"
        ) from exc
