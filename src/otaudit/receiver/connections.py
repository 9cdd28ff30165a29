"""What one client may hold before it is authenticated: connections and the time to send.

Before a token is checked, a listener is open to anyone who can reach it.
These limits bound what a client holds there (the first three on every
listener: OTLP/HTTP, OTLP/gRPC, the read API):

- **header timeout**: a request's headers must be complete within
  ``header_timeout_s`` of the connection opening or of the previous response
  on it (gRPC: the HTTP/2 preface and settings, and any TLS handshake);
- **body timeout**: its body within ``body_timeout_s`` of its headers. HTTP
  answers 408 and closes the connection; gRPC ends the call with
  DEADLINE_EXCEEDED (``receiver.grpc``). A gRPC connection is also asked to go
  away after ``2 * body_timeout_s`` (clients reconnect, as for any load
  balancer) and closed ``body_timeout_s`` later, whatever it still sends; one
  without calls is closed after ``body_timeout_s``;
- **connection limit**: at most ``max_connections`` open connections per
  listener; HTTP answers the next ones 503 (``Retry-After: 1``) and closes
  them at once, gRPC closes them;
- **calls per client address** (gRPC): at most ``max_calls_per_peer`` calls
  open at once from one address, over all its connections; the next ones are
  answered RESOURCE_EXHAUSTED with RetryInfo at once. gRPC checks the token on
  a call's headers, before its message, so that this bound, the body timeout
  and the connection limit are all an unauthenticated client can hold.

uvicorn itself bounds only idle keep-alive connections; the HTTP limits live
in :class:`GuardedH11Protocol`, a small subclass of its h11 protocol that
watches the h11 state of the client after every read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from otaudit import defaults
from otaudit.errors import ConfigError

log = logging.getLogger("otaudit.receiver")

#: File descriptors kept for everything but client connections (stores, pipes, workers).
RESERVED_FDS: Final = 128
_MIN_CONNECTIONS: Final = 8
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n"
    b"retry-after: 1\r\nconnection: close\r\n\r\ntoo many connections\n"
)
_TIMEOUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 17\r\n"
    b"connection: close\r\n\r\nrequest too slow\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-listener limits on what clients hold before their request is complete."""

    header_timeout_s: float = defaults.HEADER_TIMEOUT_S
    body_timeout_s: float = defaults.BODY_TIMEOUT_S
    max_connections: int = defaults.MAX_CONNECTIONS
    #: gRPC calls open at once from one client address (all its connections together).
    #: Above the 10 concurrent exports an OpenTelemetry Collector sends by default.
    max_calls_per_peer: int = defaults.MAX_CALLS_PER_PEER


def fit_open_files(limits: ConnectionLimits, listeners: int) -> ConnectionLimits:
    """Raise this process's open-file limit to its hard limit, and lower ``max_connections``
    (with a warning) if ``listeners`` full listeners would not fit in it: a full listener
    must never leave the others, or the ledger, without a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # e.g. macOS caps it below its "unlimited"
            pass
    if soft == resource.RLIM_INFINITY:
        return limits
    in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 32
    fits = (soft - in_use - RESERVED_FDS) // listeners
    if fits >= limits.max_connections:
        return limits
    if fits < _MIN_CONNECTIONS:
        raise ConfigError(
            f"this process may open {soft} files, too few for {listeners} listeners: "
            f"raise it (ulimit -n) to at least {in_use + RESERVED_FDS + listeners * 64}"
        )
    log.warning(
        "--max-connections %d does not fit in the %d files this process may open: "
        "at most %d connections per listener",
        limits.max_connections, soft, fits,
    )  # fmt: skip
    return replace(limits, max_connections=fits)


def grpc_options(limits: ConnectionLimits) -> list[tuple[str, Any]]:
    """The gRPC server arguments that apply ``limits`` (see the module docstring)."""
    body_ms = int(limits.body_timeout_s * 1000)
    return [
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.server_handshake_timeout_ms", int(limits.header_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", body_ms),
        ("grpc.max_connection_age_ms", 2 * body_ms),
        ("grpc.max_connection_age_grace_ms", body_ms),
    ]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, a body timeout and a connection limit.

    A subclass per listener sets ``limits`` and ``listener`` (see :func:`guarded_protocol`).
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    listener: ClassVar[str] = "HTTP"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._waiting_for: Literal["headers", "body"] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take the connection, or close it at once when the limit is reached."""
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            assert isinstance(transport, asyncio.Transport)
            transport.write(_BUSY)
            transport.close()
            log.warning("%s listener: connection refused, %d connections are open (the limit)",
                        self.listener, len(self.connections))  # fmt: skip
            return
        super().connection_made(transport)  # type: ignore[arg-type]
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        if self._refused:
            return
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Read request bytes, then time what the connection waits for next."""
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        """End the request, then time the next request's headers."""
        super().on_response_complete()
        self._watch()

    def shutdown(self) -> None:
        """The server stops: a body still arriving gets until just before the shutdown
        timeout (then 408), so that its request ends before uvicorn cancels what is left."""
        super().shutdown()
        if self._waiting_for == "body" and self._timer is not None:
            delay = max(0.0, (self.config.timeout_graceful_shutdown or 0) - 0.5)
            if self._timer.when() - self.loop.time() > delay:
                self._timer.cancel()
                self._timer = self.loop.call_later(delay, self._expired, "before the shutdown")

    def _watch(self) -> None:
        """Start the timer of what the connection now waits for, if that changed."""
        state = self.conn.their_state
        waiting_for: Literal["headers", "body"] | None = (
            "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        )
        if waiting_for == self._waiting_for:
            return
        self._stop_timer()
        self._waiting_for = waiting_for
        if waiting_for == "headers":
            timeout_s = self.limits.header_timeout_s
            self._timer = self.loop.call_later(timeout_s, self._expired, f"within {timeout_s:g} s")
        elif waiting_for == "body":
            timeout_s = self.limits.body_timeout_s
            self._timer = self.loop.call_later(timeout_s, self._expired, f"within {timeout_s:g} s")

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, when: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        started = self._waiting_for == "body" or bool(self.conn.trailing_data[0])
        if started and (cycle is None or not cycle.response_started):
            self.transport.write(_TIMEOUT)  # 408 to a request begun; an idle one just ends
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application reading the body stops waiting
            cycle.message_event.set()
        log.warning("%s listener: connection closed, request %s not received %s",
                    self.listener, self._waiting_for, when)  # fmt: skip
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits, listener: str) -> type[GuardedH11Protocol]:
    """The uvicorn ``http`` protocol class for one listener."""
    attributes = {"limits": limits, "listener": listener}
    return type(f"GuardedH11Protocol[{listener}]", (GuardedH11Protocol,), attributes)
