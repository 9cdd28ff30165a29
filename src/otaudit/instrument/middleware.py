"""Request middleware that sets the ambient actor: ASGI and WSGI.

Both are written against the plain ASGI and WSGI protocols (no framework
import). For each HTTP request they resolve

- the client address: the socket peer, or, when the peer is one of
  ``trusted_proxies``, ``X-Forwarded-For`` read right to left past them
  (:func:`otaudit.instrument.trust.client_address`);
- the user: ``get_user``, else what an authentication layer left in the
  request; the incoming W3C baggage ``enduser.id`` only when the client is
  one of ``trust_baggage_from``;

then run the application inside :func:`otaudit.instrument.actor`. A request
from a client that is not trusted runs with every ``enduser.*`` baggage entry
removed, so a forged actor is neither recorded nor passed downstream. With
``propagate=True`` (the default) the resolved user goes into baggage, so an
instrumented HTTP client passes it to downstream services that trust this one.

By default nothing the caller wrote is believed: no proxy, no baggage sender.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, Generic, TypeVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context

from otaudit.instrument.attributes import BAGGAGE_ACTOR
from otaudit.instrument.context import Actor, actor, without_enduser_baggage
from otaudit.instrument.meta import ConfigError
from otaudit.instrument.trust import Networks, client_address, is_trusted, networks

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


def _allow_list(
    switch_name: str, switch: bool | None, list_name: str, values: Iterable[str]
) -> Networks:
    """Parse an allow-list and check the older on/off switch that goes with it."""
    given = values if isinstance(values, str) else list(values)
    allowed = networks(given, list_name)
    if switch is True and not allowed:
        raise ConfigError(
            f"{switch_name}=True needs {list_name}: the addresses or networks to trust "
            "(it used to trust every caller; now nobody is trusted unless listed)"
        )
    if switch is False and allowed:
        raise ConfigError(f"{switch_name}=False contradicts {list_name}={given!r}")
    return allowed


App = TypeVar("App")


class _Resolver:
    def __init__(
        self,
        get_user: GetUser | None,
        propagate: bool,
        baggage_from: Networks,
        proxies: Networks,
    ) -> None:
        self.get_user = get_user
        self.propagate = propagate
        self.baggage_from = baggage_from
        self.proxies = proxies

    def resolve(
        self,
        request: Any,
        authenticated: str | None,
        baggage_header: str | None,
        forwarded_for: str | None,
        peer: str | None,
    ) -> tuple[Actor, bool]:
        """The request's actor, and whether its baggage comes from a trusted service."""
        client = client_address(peer, forwarded_for, self.proxies)
        trusted = is_trusted(client, self.baggage_from)
        found = self.get_user(request) if self.get_user is not None else None
        if isinstance(found, Actor):
            return replace(found, client_address=found.client_address or client), trusted
        user = found or authenticated
        if user is None and trusted:
            user = _baggage_user(baggage_header)
        return Actor(user, (), client), trusted

    @contextmanager
    def enter(self, who: Actor, trusted: bool) -> Iterator[Actor]:
        """Run with ``who`` as the actor; without the caller's ``enduser.*`` unless ``trusted``."""
        token = None if trusted else otel_context.attach(without_enduser_baggage())
        try:
            with actor(
                who.user_id,
                roles=who.roles,
                client_address=who.client_address,
                propagate=self.propagate,
            ) as current:
                yield current
        finally:
            if token is not None:
                otel_context.detach(token)


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
    """What both middlewares are built from: the wrapped app and how to resolve the actor.

    ``trusted_proxies``: addresses or networks of the reverse proxies in front
    of the service; ``X-Forwarded-For`` is read only when the socket peer is
    one, right to left past them. ``trust_baggage_from``: addresses or
    networks of the services whose baggage ``enduser.id`` names the actor when
    the application's own authentication names nobody. Both default to empty:
    the socket peer is the client, and baggage never names the actor.

    ``trust_baggage`` and ``trust_forwarded_for`` are the older switches:
    ``False`` is the default behaviour, ``True`` needs the matching list.
    Invalid or contradictory options raise :class:`~otaudit.instrument.meta.ConfigError`
    (a ``ValueError``).
    """

    def __init__(
        self,
        app: App,
        *,
        get_user: GetUser | None = None,
        propagate: bool = True,
        trusted_proxies: Iterable[str] = (),
        trust_baggage_from: Iterable[str] = (),
        trust_baggage: bool | None = None,
        trust_forwarded_for: bool | None = None,
    ) -> None:
        self.app = app
        self._resolver = _Resolver(
            get_user,
            propagate,
            _allow_list("trust_baggage", trust_baggage, "trust_baggage_from", trust_baggage_from),
            _allow_list(
                "trust_forwarded_for", trust_forwarded_for, "trusted_proxies", trusted_proxies
            ),
        )


class AuditContextMiddleware(_Middleware[ASGIApp]):
    """ASGI middleware: each HTTP or WebSocket request runs with its actor set.

    The user is ``get_user(scope)`` if given and not None, else the authenticated
    ``scope["user"]`` an authentication middleware placed *outside* this one
    (``identity``, else ``display_name``), else, from a client in
    ``trust_baggage_from`` only, the request's baggage ``enduser.id``. The
    client address is ``scope["client"]``, or the ``X-Forwarded-For`` hop the
    last of ``trusted_proxies`` saw. With ``propagate`` (the default) the user
    id is also put into OpenTelemetry baggage for the request. Other scope
    types (``lifespan``) pass through untouched.
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
        who, trusted = self._resolver.resolve(
            scope,
            _scope_user(scope),
            ",".join(headers.get("baggage", ())) or None,
            ",".join(headers.get("x-forwarded-for", ())) or None,
            str(client[0]) if client else None,
        )
        with self._resolver.enter(who, trusted):
            await self.app(scope, receive, send)


class AuditContextWSGIMiddleware(_Middleware[WSGIApplication]):
    """WSGI middleware: each request runs with its actor set.

    The user is ``get_user(environ)`` if given and not None, else
    ``REMOTE_USER`` (set by the server or an authentication middleware), else,
    from a client in ``trust_baggage_from`` only, the request's baggage
    ``enduser.id``. The client address is ``REMOTE_ADDR``, or the
    ``X-Forwarded-For`` hop the last of ``trusted_proxies`` saw (do not also
    apply Werkzeug's ``ProxyFix`` inside this middleware's view of the
    environ: list the proxies here). With ``propagate`` (the default)
    the user id is also put into OpenTelemetry baggage for the request. A lazily
    produced response body is iterated inside the same context. For Flask:
    ``app.wsgi_app = AuditContextWSGIMiddleware(app.wsgi_app, get_user=...)``.
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Handle one WSGI request."""
        who, trusted = self._resolver.resolve(
            environ,
            environ.get("REMOTE_USER") or None,
            environ.get("HTTP_BAGGAGE"),
            environ.get("HTTP_X_FORWARDED_FOR"),
            environ.get("REMOTE_ADDR") or None,
        )

        def enter() -> AbstractContextManager[Actor]:
            return self._resolver.enter(who, trusted)

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
