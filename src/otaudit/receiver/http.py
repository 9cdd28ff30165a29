"""The OTLP/HTTP receiver (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``), ``/metrics`` and
``/status``.

Status semantics follow the OTLP specification: 200 with ``partial_success``
when records were rejected, 400 with a ``google.rpc.Status`` body for bad
data, 405, 413 when the body passes the limit after decompression, 415, and
503 with Retry-After while the ledger cannot take the export. Responses use
the request's content type.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from otaudit.auth import Authenticator, bearer
from otaudit.errors import Forbidden, OtauditError, Overloaded, PayloadTooLarge, Unauthenticated
from otaudit.ingest import COMMIT_WAIT_S, PIPELINE_HEADER, Ingest, source_of
from otaudit.otlp import body as otlp_body
from otaudit.otlp.status import failure_for
from otaudit.receiver.responses import (
    export_response,
    export_response_json,
    status_json,
    status_message,
)
from otaudit.status import ServerInfo, server_status

log = logging.getLogger("otaudit.receiver.http")
_PROMETHEUS: Final = "text/plain; version=0.0.4; charset=utf-8"


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body of {declared} bytes is larger than the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body is larger than the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _commit_timeout() -> Overloaded:
    return Overloaded(f"commit did not finish within {COMMIT_WAIT_S:.0f} s; retry", 5)


def build_app(ingest: Ingest, authn: Authenticator, info: ServerInfo | None = None) -> Starlette:
    """The Starlette application serving OTLP/HTTP, ``/metrics``, ``/status`` and ``/healthz``.

    Exports need a token with the ``ingest`` scope and ``/metrics`` and ``/status`` one with
    ``admin`` once any token exists; ``/healthz`` is open (it says nothing but "ok").
    ``info`` is what ``/status`` says of the server itself (default: started now, no
    listeners named, detection off).
    """
    info = info or ServerInfo(time.time_ns(), {}, detection=False)
    limit = ingest.settings.max_body_bytes

    async def export(request: Request) -> Response:
        received_ns = time.time_ns()
        otlp_signal = request.url.path.rsplit("/", 1)[-1]
        media = otlp_body.JSON
        try:
            media = otlp_body.media_type(request.headers.get("content-type"))
            caller = authn.check(bearer(request.headers.get("authorization")), "ingest")
            source = source_of(caller.token_id, _address(request))
            gzipped = otlp_body.check_encoding(request.headers.get("content-encoding"))
            pipeline = ingest.pipeline(request.headers.get(PIPELINE_HEADER))
            raw = await _read_body(request, limit)
            prepared = await asyncio.wrap_future(
                ingest.prepare(otlp_signal, media, raw, gzipped, pipeline, received_ns, source)
            )
            await asyncio.wait_for(
                asyncio.wrap_future(ingest.commit(prepared, source)), COMMIT_WAIT_S
            )
            rejected, text = prepared.rejected, prepared.message
        except ClientDisconnect:
            # The body never arrived: the client left, or the body timeout answered 408.
            ingest.metrics.failed_requests.labels("http", "incomplete_body").inc()
            ingest.drops.note("incomplete_body", _address(request))
            return Response(status_code=400)  # sent to nobody
        except (OtauditError, TimeoutError) as caught:
            exc = caught if isinstance(caught, OtauditError) else _commit_timeout()
            failure = failure_for(exc)
            ingest.metrics.failed_requests.labels("http", failure.reason).inc()
            ingest.drops.note(failure.reason, _address(request), 1, str(exc))
            headers = {}
            if failure.http_status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="otaudit"'
            if failure.retry_after_s is not None:
                headers["Retry-After"] = str(failure.retry_after_s)
            if media == otlp_body.PROTOBUF:
                content = status_message(failure, str(exc)).SerializeToString()
            else:
                content = status_json(failure, str(exc))
            return Response(content, failure.http_status, headers, media_type=media)
        ingest.note_dropped(prepared, _address(request))
        if media == otlp_body.PROTOBUF:
            content = export_response(otlp_signal, rejected, text).SerializeToString()
        else:
            content = export_response_json(otlp_signal, rejected, text)
        return Response(content, 200, media_type=media)

    def refused(request: Request) -> Response | None:
        """The answer to a request without an admin token (None: it may go on)."""
        try:
            authn.check(bearer(request.headers.get("authorization")), "admin")
        except (Unauthenticated, Forbidden) as exc:
            status = 401 if isinstance(exc, Unauthenticated) else 403
            headers = {"WWW-Authenticate": 'Bearer realm="otaudit"'} if status == 401 else None
            return Response(f"{exc}\n", status, headers, media_type="text/plain")
        return None

    async def metrics(request: Request) -> Response:
        return refused(request) or Response(ingest.metrics.render(), media_type=_PROMETHEUS)

    async def status(request: Request) -> Response:
        return refused(request) or JSONResponse(server_status(info, ingest.metrics, authn.required))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route(f"/v1/{otlp_signal}", export, methods=["POST"])
        for otlp_signal in ("traces", "logs", "metrics")
    ]
    routes += [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]

    async def not_served(request: Request, exc: Exception) -> Response:
        # Exports sent to a wrong path or with a wrong method store nothing: say so.
        assert isinstance(exc, HTTPException)
        reason = "not_found" if exc.status_code == 404 else "method_not_allowed"
        ingest.metrics.failed_requests.labels("http", reason).inc()
        ingest.drops.note(reason, _address(request), 1, f"{request.method} {request.url.path}")
        return PlainTextResponse(exc.detail, exc.status_code, exc.headers)

    return Starlette(routes=routes, exception_handlers={404: not_served, 405: not_served})


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None
