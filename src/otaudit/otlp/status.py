"""One table from errors to OTLP statuses: HTTP status, gRPC code, retryability.

Follows the OTLP specification's failure semantics: bad data is not
retryable (HTTP 400 / INVALID_ARGUMENT); throttling and a store that is
away are retryable (HTTP 503 with Retry-After / UNAVAILABLE with RetryInfo).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from otaudit.errors import (
    DecodeError,
    Forbidden,
    OtauditError,
    Overloaded,
    PayloadTooLarge,
    StoreError,
    Unauthenticated,
    UnsupportedMediaType,
)


@dataclass(frozen=True)
class Failure:
    """How one error is answered on each transport."""

    http_status: int
    grpc_code: grpc.StatusCode
    reason: str
    retry_after_s: int | None = None


def failure_for(exc: OtauditError) -> Failure:
    """Map an otaudit error to its OTLP answer (most specific class first)."""
    if isinstance(exc, Unauthenticated):
        return Failure(401, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
    if isinstance(exc, Forbidden):
        return Failure(403, grpc.StatusCode.PERMISSION_DENIED, "forbidden")
    if isinstance(exc, PayloadTooLarge):
        return Failure(413, grpc.StatusCode.RESOURCE_EXHAUSTED, "too_large")
    if isinstance(exc, DecodeError):
        return Failure(400, grpc.StatusCode.INVALID_ARGUMENT, "bad_request")
    if isinstance(exc, UnsupportedMediaType):
        return Failure(415, grpc.StatusCode.UNIMPLEMENTED, "unsupported_media_type")
    if isinstance(exc, Overloaded):
        return Failure(503, grpc.StatusCode.UNAVAILABLE, "overloaded", exc.retry_after_s)
    if isinstance(exc, StoreError):
        return Failure(503, grpc.StatusCode.UNAVAILABLE, "store_unavailable", 5)
    return Failure(500, grpc.StatusCode.INTERNAL, "internal")
