"""The OTLP/gRPC receiver: TraceService, LogsService and MetricsService.

Requests arrive as raw bytes (no deserializer): decoding happens in the
ingest workers, like on HTTP. Errors map through ``otlp.status``:
INVALID_ARGUMENT for bad data, UNAVAILABLE with a ``google.rpc.RetryInfo``
in ``grpc-status-details-bin`` while the ledger cannot take the export (the
OpenTelemetry exporters read it and back off). gzip is handled by gRPC
itself, which takes one gzip member per message (INTERNAL for more, before
otaudit sees it); the message size limit is the same ``max_body_bytes`` as on
HTTP.

A call holds nothing but a little memory until its message is in: the server
is a ``grpc.aio`` server on an event loop thread of its own, and ``Export`` is
registered as client-streaming (a unary request is the same bytes on the wire)
so that its handler starts on the call's headers. In order, it:

1. checks the token in the metadata (UNAUTHENTICATED / PERMISSION_DENIED),
   before any of the message is read: a call without a valid token ends here;
2. refuses the call if its address already has ``max_calls_per_peer`` calls
   past step 1 (RESOURCE_EXHAUSTED with RetryInfo);
3. reads exactly one message within ``body_timeout_s`` of the headers
   (DEADLINE_EXCEEDED otherwise, like HTTP's 408);
4. hands it to a pool of ``workers`` threads that wait for the ingest workers
   and the commit, so that the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Final, NoReturn

import grpc
import grpc.aio
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2

from otaudit.auth import Authenticator, bearer
from otaudit.errors import DecodeError, OtauditError, Overloaded
from otaudit.ingest import COMMIT_WAIT_S, PIPELINE_HEADER, Ingest, Prepared, source_of
from otaudit.otlp.body import PROTOBUF
from otaudit.otlp.status import Failure, failure_for
from otaudit.receiver.connections import ConnectionLimits, grpc_options
from otaudit.receiver.responses import export_response, status_message

SERVICES: Final = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]  # (not in grpc-stubs)
#: Seconds a client refused for holding too many calls is asked to wait.
BUSY_RETRY_S: Final = 1


class TooManyCalls(Overloaded):
    """A client address already has as many calls open as one address may hold."""


class IncompleteMessage(OtauditError):
    """A call's request message did not arrive within the body timeout."""


def _failure(exc: OtauditError) -> Failure:
    if isinstance(exc, TooManyCalls):
        # OTLP/gRPC (specification, "Failures"): a client retries RESOURCE_EXHAUSTED only
        # when the server says recovery is possible by sending RetryInfo, which this does;
        # exporters that predate that rule retry it in any case. So an honest exporter
        # waits BUSY_RETRY_S and retries, while the code still says "you hold too much",
        # not "the server is down" (UNAVAILABLE also makes some exporters reconnect).
        return Failure(429, grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_calls", exc.retry_after_s)
    if isinstance(exc, IncompleteMessage):
        return Failure(408, grpc.StatusCode.DEADLINE_EXCEEDED, "incomplete_body")
    return failure_for(exc)


def peer_host(peer: str) -> str:
    """The client address of a gRPC peer string without its port (``ipv4:10.0.0.7:5100``
    -> ``ipv4:10.0.0.7``); other forms (``unix:PATH``) are returned whole."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rpartition(":")[0]
    return peer


class _PeerCalls:
    """Open calls per client address (used on the event loop thread only: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    @contextmanager
    def hold(self, peer: str) -> Iterator[None]:
        host = peer_host(peer)
        held = self._open.get(host, 0)
        if held >= self.limit:
            raise TooManyCalls(
                f"{host} already has {held} calls open, the limit per client address; "
                f"retry in {BUSY_RETRY_S} s",
                BUSY_RETRY_S,
            )
        self._open[host] = held + 1
        try:
            yield
        finally:
            left = self._open[host] - 1
            if left:
                self._open[host] = left
            else:
                del self._open[host]


def _ingest(
    ingest: Ingest, otlp_signal: str, body: bytes, pipeline: str, received_ns: int, source: str
) -> Prepared:
    """Decode, seal and commit one request (blocking); what it held."""
    prepared = ingest.prepare(
        otlp_signal, PROTOBUF, body, False, pipeline, received_ns, source
    ).result()
    try:
        ingest.commit(prepared, source).result(timeout=COMMIT_WAIT_S)
    except TimeoutError:
        raise Overloaded(f"commit did not finish within {COMMIT_WAIT_S:.0f} s", 5) from None
    return prepared


class GrpcReceiver:
    """The OTLP/gRPC listener (see the module docstring), with the part of the
    ``grpc.Server`` interface the server uses: ``start`` and ``stop``."""

    def __init__(
        self, ingest: Ingest, authn: Authenticator, workers: int, limits: ConnectionLimits
    ) -> None:
        self._ingest = ingest
        self._authn = authn
        self._body_timeout_s = limits.body_timeout_s
        self._peers = _PeerCalls(limits.max_calls_per_peer)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otaudit-grpc")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="otaudit-grpc-loop", daemon=True)
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._server: grpc.aio.Server | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()
        self._stopped.set()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def bind(
        self,
        address: str,
        options: list[tuple[str, Any]],
        credentials: grpc.ServerCredentials | None,
    ) -> int:
        """Create the server on its loop and bind ``address``; the port bound (0: failed)."""
        self._thread.start()

        async def create() -> int:
            handlers = [self._handler(otlp_signal) for otlp_signal in SERVICES]
            self._server = grpc.aio.server(handlers=handlers, options=options)
            try:
                if credentials is None:
                    return self._server.add_insecure_port(address)
                return self._server.add_secure_port(address, credentials)
            except RuntimeError:  # grpc's "Failed to bind to address" (in use, not local)
                return 0

        port: int = self._call(create())
        if port == 0:
            self.stop(None)
        return port

    def start(self) -> None:
        """Start serving."""
        assert self._server is not None
        self._call(self._server.start())

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls, give those in flight ``grace`` seconds, then cancel them; the
        event is set once the calls and the loop have ended (a second call: the same)."""

        async def stop() -> None:
            try:
                if self._server is not None:
                    await self._server.stop(grace)
                await asyncio.to_thread(self._pool.shutdown)  # commits already started finish
            finally:
                self._loop.stop()

        with self._stop_lock:
            if self._stopping:
                return self._stopped
            self._stopping = True
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop(), self._loop)
        else:
            self._stopped.set()
        return self._stopped

    def _handler(self, otlp_signal: str) -> grpc.GenericRpcHandler[Any, Any]:
        async def export(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await self._export(otlp_signal, context)

        method = grpc.stream_unary_rpc_method_handler(
            export, request_deserializer=None, response_serializer=_serialize
        )
        return grpc.method_handlers_generic_handler(SERVICES[otlp_signal], {"Export": method})

    async def _export(self, otlp_signal: str, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.monotonic()
        ingest = self._ingest
        try:
            metadata: Mapping[str, Any] = dict(context.invocation_metadata() or ())
            caller = self._authn.check(bearer(metadata.get("authorization")), "ingest")
            source = source_of(caller.token_id, peer_host(context.peer()))
            pipeline = ingest.pipeline(metadata.get(PIPELINE_HEADER))
            with self._peers.hold(context.peer()):
                body = await self._read_one(context, started + self._body_timeout_s)
                received_ns = time.time_ns()
                work = functools.partial(
                    _ingest, ingest, otlp_signal, body, pipeline, received_ns, source
                )
                loop = asyncio.get_running_loop()
                prepared = await loop.run_in_executor(self._pool, work)
        except OtauditError as exc:
            await _abort(context, ingest, exc)
        ingest.note_dropped(prepared, peer_host(context.peer()))
        return export_response(otlp_signal, prepared.rejected, prepared.message)

    async def _read_one(
        self, context: grpc.aio.ServicerContext[Any, Any], deadline: float
    ) -> bytes:
        """The call's one request message, read by ``deadline`` (IncompleteMessage)."""
        messages: list[bytes] = []
        while True:
            left_s = deadline - time.monotonic()
            try:
                if left_s <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(context.read(), left_s)
            except TimeoutError:
                what = "request message" if not messages else "end of the request"
                raise IncompleteMessage(
                    f"{what} not received within {self._body_timeout_s:g} s of the headers"
                ) from None
            if message is _EOF:
                break
            messages.append(message)
            if len(messages) > 1:
                raise DecodeError("Export takes one request message; the client sent more")
        if not messages:
            raise DecodeError("the call ended without a request message")
        return messages[0]


def _serialize(response: Any) -> bytes:
    data: bytes = response.SerializeToString()
    return data


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], ingest: Ingest, exc: OtauditError
) -> NoReturn:
    failure = _failure(exc)
    ingest.metrics.failed_requests.labels("grpc", failure.reason).inc()
    ingest.drops.note(failure.reason, peer_host(context.peer()), 1, str(exc))
    status = status_message(failure, str(exc)).SerializeToString()
    trailers: list[tuple[str, str | bytes]] = [("grpc-status-details-bin", status)]
    if failure.retry_after_s is not None:
        # The OpenTelemetry Python exporter reads RetryInfo from this key, not from the status.
        delay = Duration(seconds=failure.retry_after_s)
        info = error_details_pb2.RetryInfo(retry_delay=delay).SerializeToString()
        trailers.append(("google.rpc.retryinfo-bin", info))
    await context.abort(failure.grpc_code, str(exc), trailing_metadata=tuple(trailers))


def build_server(
    ingest: Ingest,
    authn: Authenticator,
    address: str,
    *,
    workers: int = 8,
    credentials: grpc.ServerCredentials | None = None,
    limits: ConnectionLimits | None = None,
) -> tuple[GrpcReceiver, int]:
    """A gRPC receiver bound to ``address`` (not started) and the port it got.

    Exports need a token with the ``ingest`` scope in the ``authorization`` metadata
    once any token exists (UNAUTHENTICATED / PERMISSION_DENIED otherwise). ``limits``
    bound connections, their handshakes, the time to send a message and the calls one
    address may hold (see ``receiver.connections``); ``workers`` threads wait for ingest."""
    limits = limits or ConnectionLimits()
    options = [
        ("grpc.max_receive_message_length", ingest.settings.max_body_bytes),
        ("grpc.so_reuseport", 0),
        *grpc_options(limits),
    ]
    receiver = GrpcReceiver(ingest, authn, workers, limits)
    return receiver, receiver.bind(address, options, credentials)
