"""Issue 14, finding 7: the middleware believes only what the operator said to believe.

The attacks: an anonymous request that forges ``baggage: enduser.id=admin``; a
spoofed ``X-Forwarded-For``; an edge service that does not trust baggage but
passes the forged entry on to an internal service that trusts the edge.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from opentelemetry import context, propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otaudit.instrument import (
    AuditContextMiddleware,
    AuditContextWSGIMiddleware,
    ConfigError,
    audit_span,
)
from otaudit.instrument.middleware import ASGIApp, Receive, Scope, Send
from otaudit.instrument.trust import client_address, networks

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

FORGED = {"baggage": "enduser.id=admin,enduser.role=owner,other=kept"}


@pytest.fixture
def tracing() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def recorded(span: ReadableSpan, name: str) -> object:
    assert span.attributes is not None
    return span.attributes.get(name)


class ExtractContext:
    """What OpenTelemetry's ASGI instrumentation does first: the headers become the context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        token = context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)


def service(
    tracer: Tracer, action: str, downstream: TestClient | None = None, **options: Any
) -> Any:
    """A service that records ``action`` and, given ``downstream``, calls it with its baggage."""

    async def view(request: Request) -> JSONResponse:
        with audit_span(action, target="bob", tracer=tracer):
            outgoing: dict[str, str] = {}
            propagate.inject(outgoing)
        if downstream is not None:
            downstream.get("/", headers=outgoing)
        return JSONResponse({"baggage": outgoing.get("baggage")})

    app = Starlette(routes=[Route("/", view)])
    app.add_middleware(AuditContextMiddleware, **options)
    return ExtractContext(app)


# -- attack 1: an anonymous request forges the actor in baggage ------------------------------


def test_forged_baggage_does_not_name_the_actor_asgi(
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    with TestClient(service(tracer, "record_view")) as client:  # the default wiring
        sent_on = client.get("/", headers=FORGED).json()
    (span,) = exporter.get_finished_spans()
    assert recorded(span, "enduser.id") is None
    assert sent_on == {"baggage": "other=kept"}


def test_forged_baggage_does_not_name_the_actor_wsgi(
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    app = Flask(__name__)

    @app.get("/")
    def view() -> dict[str, str]:
        with audit_span("record_view", tracer=tracer):
            return {}

    app.wsgi_app = AuditContextWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    app.test_client().get("/", headers=FORGED)
    (span,) = exporter.get_finished_spans()
    assert recorded(span, "enduser.id") is None


def test_baggage_names_the_actor_only_from_a_trusted_peer(
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    app = service(tracer, "record_view", trust_baggage_from=["10.1.0.0/16"])
    with TestClient(app, client=("10.1.2.3", 5000)) as trusted:
        assert trusted.get("/", headers=FORGED).json() == {
            "baggage": "other=kept,enduser.id=admin"  # the actor it names, and nothing else
        }
    with TestClient(app, client=("10.2.0.1", 5000)) as stranger:
        assert stranger.get("/", headers=FORGED).json() == {"baggage": "other=kept"}
    assert [recorded(s, "enduser.id") for s in exporter.get_finished_spans()] == ["admin", None]


# -- attack 2: a spoofed X-Forwarded-For -----------------------------------------------------

SPOOFED = {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.7"}


@pytest.mark.parametrize(
    ("peer", "proxies", "expected"),
    [
        ("198.51.100.7", [], "198.51.100.7"),  # no trusted proxies: the socket peer is the client
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["10.0.0.0/24"], "203.0.113.9"),  # right to left
        ("10.0.0.1", ["10.0.0.1", "10.0.0.7"], "203.0.113.9"),
        ("10.0.0.1", ["10.0.0.1"], "10.0.0.7"),  # 10.0.0.7 is not a proxy
        ("198.51.100.7", ["10.0.0.0/24"], "198.51.100.7"),  # peer untrusted
        ("::ffff:10.0.0.1", ["10.0.0.0/24"], "203.0.113.9"),
    ],
)
def test_spoofed_forwarded_for(
    tracing: tuple[Tracer, InMemorySpanExporter],
    peer: str,
    proxies: list[str],
    expected: str,
) -> None:
    tracer, exporter = tracing
    with TestClient(
        service(tracer, "record_view", trusted_proxies=proxies), client=(peer, 5000)
    ) as client:
        client.get("/", headers=SPOOFED)
    (span,) = exporter.get_finished_spans()
    assert recorded(span, "client.address") == expected


def test_spoofed_forwarded_for_wsgi(tracing: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = tracing
    app = Flask(__name__)

    @app.get("/")
    def view() -> dict[str, str]:
        with audit_span("record_view", tracer=tracer):
            return {}

    plain = AuditContextWSGIMiddleware(app.wsgi_app)
    proxied = AuditContextWSGIMiddleware(app.wsgi_app, trusted_proxies=["10.0.0.0/24"])
    for wsgi_app in (plain, proxied):
        app.wsgi_app = wsgi_app  # type: ignore[method-assign]
        app.test_client().get("/", headers=SPOOFED, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    spans = exporter.get_finished_spans()
    assert [recorded(s, "client.address") for s in spans] == ["10.0.0.1", "203.0.113.9"]


# -- attack 3: the edge does not trust baggage, the internal service trusts the edge ---------


def test_an_edge_that_distrusts_baggage_does_not_pass_it_on(
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    internal = service(tracer, "role_update", trust_baggage_from=["10.0.0.2"])
    with TestClient(internal, client=("10.0.0.2", 5000)) as to_internal:
        edge = service(tracer, "record_view", downstream=to_internal, trust_baggage=False)
        with TestClient(edge, client=("203.0.113.66", 5000)) as attacker:
            sent_on = attacker.get("/", headers=FORGED).json()
    record_view, role_update = exporter.get_finished_spans()
    assert recorded(role_update, "audit.action") == "role_update"
    assert recorded(role_update, "enduser.id") is None  # not "admin"
    assert recorded(record_view, "enduser.id") is None
    assert sent_on == {"baggage": "other=kept"}


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trust_baggage": True}, "trust_baggage=True needs trust_baggage_from"),
        ({"trust_forwarded_for": True}, "trust_forwarded_for=True needs trusted_proxies"),
        (
            {"trust_forwarded_for": False, "trusted_proxies": ["10.0.0.1"]},
            "trust_forwarded_for=False contradicts trusted_proxies",
        ),
        ({"trusted_proxies": ["10.0.0.300"]}, "trusted_proxies: expected an IP address"),
        ({"trust_baggage_from": ["*"]}, "trust_baggage_from: expected an IP address"),
    ],
)
def test_unsafe_or_contradictory_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuditContextMiddleware(Starlette(), **options)


# -- the right-to-left walk, as vectors ------------------------------------------------------

PROXIES = networks(["10.0.0.0/8", "fd00::/8"], "trusted_proxies")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("10.0.0.1", None, "10.0.0.1"),  # no header: the peer
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "203.0.113.9:4711", "203.0.113.9"),  # a port some proxies append
        ("10.0.0.1", "[2001:db8::1]:4711, 10.9.9.9", "2001:db8::1"),
        ("fd00::1", "2001:db8::2", "2001:db8::2"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # proxies only: the leftmost
        ("10.0.0.1", "6.6.6.6, , 10.0.0.2", "10.0.0.2"),  # an empty hop ends the walk
        ("10.0.0.1", "6.6.6.6, unknown", "unknown"),  # what the last proxy wrote
        ("192.0.2.1", "10.0.0.2", "192.0.2.1"),  # an untrusted peer's header is not read
        (None, "203.0.113.9", None),  # no peer (a Unix socket): nothing is vouched for
    ],
)
def test_client_address_vectors(
    peer: str | None, forwarded_for: str | None, expected: str | None
) -> None:
    assert client_address(peer, forwarded_for, PROXIES) == expected
    assert client_address(peer, forwarded_for, ()) == peer


def test_allow_lists_take_a_comma_separated_string_or_any_iterable() -> None:
    AuditContextMiddleware(
        Starlette(),
        trusted_proxies="10.0.0.1, 10.0.0.0/8",
        trust_baggage_from=(network for network in ["10.1.0.0/16"]),
        trust_baggage=True,
        trust_forwarded_for=True,
    )
    with pytest.raises(ConfigError, match=r"trusted_proxies=\['10.0.0.1'\]"):
        AuditContextMiddleware(
            Starlette(), trusted_proxies=iter(["10.0.0.1"]), trust_forwarded_for=False
        )
