"""Request middleware that sets the ambient actor: ASGI and WSGI.

Both are written against the plain ASGI and WSGI protocols (no framework
import). For each HTTP request they resolve the user (``get_user``, else what
an authentication layer left in the request, else the incoming W3C baggage
``enduser.id``) and the client address (the first ``X-Forwarded-For`` hop,
else the connection's peer), then run the application inside
:func:`otaudit.instrument.actor` with ``propagate=True``: every audit record
of the request names the actor, and an instrumented HTTP client passes the
actor on to downstream services in baggage.

Trust: a baggage header and ``X-Forwarded-For`` are whatever the caller sent.
At a service reachable from outside, pass ``trust_baggage=False`` (or strip
the header at the edge) and only trust ``X-Forwarded-For`` behind a proxy
that overwrites it (``trust_forwarded_for=False`` otherwise).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Generic, TypeVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context

from otaudit.instrument.attributes import BAGGAGE_ACTOR
from otaudit.instrument.context import Actor, actor

__all__ = ["ASGIApp", "AuditContextMiddleware", "AuditContextWSGIMiddleware", "GetUser"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``get_user(scope_or_environ)``: a user id, an :class:`Actor` (to add roles), or None.
GetUser = Callable[[Any], "str | Actor | None"]

_BAGGAGE = W3CBaggagePropagator()


def _baggage_user(header: str | None) -> str | None:
    if not header:
        return None
    value = baggage.get_baggage(BAGGAGE_ACTOR, _BAGGAGE.extract({"baggage": header}, Context()))
    return value if isinstance(value, str) and value else None


def _first_hop(forwarded_for: str | None) -> str | None:
    if not forwarded_for:
        return None
    return forwarded_for.split(",", 1)[0].strip() or None


App = TypeVar("App")


class _Resolver:
    def __init__(
        self,
        get_user: GetUser | None,
        propagate: bool,
        trust_baggage: bool,
        trust_forwarded_for: bool,
    ) -> None:
        self.get_user = get_user
        self.propagate = propagate
        self.trust_baggage = trust_baggage
        self.trust_forwarded_for = trust_forwarded_for

    def resolve(
        self,
        request: Any,
        authenticated: str | None,
        baggage_header: str | None,
        forwarded_for: str | None,
        peer: str | None,
    ) -> Actor:
        client = (_first_hop(forwarded_for) if self.trust_forwarded_for else None) or peer
        found = self.get_user(request) if self.get_user is not None else None
        if isinstance(found, Actor):
            who = replace(found, client_address=found.client_address or client)
        else:
            user = found or authenticated
            if user is None and self.trust_baggage:
                user = _baggage_user(baggage_header)
            who = Actor(user, (), client)
        return who

    def enter(self, who: Actor) -> AbstractContextManager[Actor]:
        return actor(
            who.user_id,
            roles=who.roles,
            client_address=who.client_address,
            propagate=self.propagate,
        )


def _scope_user(scope: Scope) -> str | None:
    """The id of an authenticated ``scope["user"]`` (Starlette's ``BaseUser`` protocol)."""
    user = scope.get("user")
    if user is None:
        return None
    try:
        if not user.is_authenticated:
            return None
    except (AttributeError, NotImplementedError):
        return None
    for name in ("identity", "display_name"):
        try:
            value = getattr(user, name)
        except (AttributeError, NotImplementedError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


class _Middleware(Generic[App]):
    """What both middlewares are built from: the wrapped app and how to resolve the actor."""

    def __init__(
        self,
        app: App,
        *,
        get_user: GetUser | None = None,
        propagate: bool = True,
        trust_baggage: bool = True,
        trust_forwarded_for: bool = True,
    ) -> None:
        self.app = app
        self._resolver = _Resolver(get_user, propagate, trust_baggage, trust_forwarded_for)


class AuditContextMiddleware(_Middleware[ASGIApp]):
    """ASGI middleware: each HTTP or WebSocket request runs with its actor set.

    The user is ``get_user(scope)`` if given and not None, else the authenticated
    ``scope["user"]`` an authentication middleware placed *outside* this one
    (``identity``, else ``display_name``), else the request's baggage
    ``enduser.id``. The client address is the first ``X-Forwarded-For`` hop,
    else ``scope["client"]``. With ``propagate`` (the default) the user id is
    also put into OpenTelemetry baggage for the request. Other scope types
    (``lifespan``) pass through untouched.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, list[str]] = {}
        for key, value in scope.get("headers", ()):
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        client = scope.get("client")
        who = self._resolver.resolve(
            scope,
            _scope_user(scope),
            ",".join(headers.get("baggage", ())) or None,
            ",".join(headers.get("x-forwarded-for", ())) or None,
            str(client[0]) if client else None,
        )
        with self._resolver.enter(who):
            await self.app(scope, receive, send)


class AuditContextWSGIMiddleware(_Middleware[WSGIApplication]):
    """WSGI middleware: each request runs with its actor set.

    The user is ``get_user(environ)`` if given and not None, else
    ``REMOTE_USER`` (set by the server or an authentication middleware), else the
    request's baggage ``enduser.id``. The client address is the first
    ``X-Forwarded-For`` hop, else ``REMOTE_ADDR``. With ``propagate`` (the default)
    the user id is also put into OpenTelemetry baggage for the request. A lazily
    produced response body is iterated inside the same context. For Flask:
    ``app.wsgi_app = AuditContextWSGIMiddleware(app.wsgi_app, get_user=...)``.
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Handle one WSGI request."""
        who = self._resolver.resolve(
            environ,
            environ.get("REMOTE_USER") or None,
            environ.get("HTTP_BAGGAGE"),
            environ.get("HTTP_X_FORWARDED_FOR"),
            environ.get("REMOTE_ADDR") or None,
        )

        def enter() -> AbstractContextManager[Actor]:
            return self._resolver.enter(who)

        with enter():
            body = self.app(environ, start_response)
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(body, list | tuple) or (
            isinstance(wrapper, type) and isinstance(body, wrapper)
        ):
            return body  # nothing runs while it is sent (or the server sends the file itself)
        return _InContext(body, enter)


class _InContext:
    """A WSGI response body whose iteration and ``close`` run in the request's context."""

    def __init__(self, body: Iterable[bytes], enter: Callable[[], AbstractContextManager[Actor]]):
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._enter = enter

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self._enter():
            if self._iterator is None:
                self._iterator = iter(self._body)
            return next(self._iterator)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if callable(close):
            with self._enter():
                close()
