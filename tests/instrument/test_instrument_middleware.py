"""AuditContextMiddleware (Starlette, real ASGI) and AuditContextWSGIMiddleware (Flask)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from otaudit.instrument import (
    Actor,
    AuditContextMiddleware,
    AuditContextWSGIMiddleware,
    audit_span,
    current_actor,
)

with warnings.catch_warnings():
    # Starlette 1.x asks for the `httpx2` distribution for its TestClient; `httpx` still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@pytest.fixture
def tracing() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def audit_fields(span: ReadableSpan) -> dict[str, object]:
    assert span.attributes is not None
    keep = ("enduser.id", "user.roles", "client.address", "audit.action", "audit.result")
    return {k: span.attributes[k] for k in keep if k in span.attributes}


def handle(tracer: Tracer) -> dict[str, Any]:
    """What both apps' routes do: record an audit span and call 'downstream'."""
    with audit_span("record_view", target="r1", tracer=tracer):
        outgoing: dict[str, str] = {}
        propagate.inject(outgoing)
    who = current_actor()
    return {"actor": who and who.user_id, "baggage": outgoing.get("baggage")}


class BearerBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        token = conn.headers.get("authorization", "").removeprefix("Bearer ")
        return (AuthCredentials(["authenticated"]), SimpleUser(token)) if token else None


def starlette_app(tracer: Tracer, *, auth: bool = False, **options: Any) -> Starlette:
    async def view(request: Request) -> JSONResponse:
        return JSONResponse(handle(tracer))

    def sync_view(request: Request) -> JSONResponse:  # runs in a worker thread
        return JSONResponse(handle(tracer))

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        who = current_actor()
        await websocket.send_json({"actor": who and who.user_id})
        await websocket.close()

    middleware = [Middleware(AuthenticationMiddleware, backend=BearerBackend())] if auth else []
    middleware.append(Middleware(AuditContextMiddleware, **options))
    routes = [Route("/", view), Route("/sync", sync_view), WebSocketRoute("/ws", socket)]
    return Starlette(routes=routes, middleware=middleware)


def test_starlette_actor_from_a_trusted_service_and_client_address_from_a_trusted_proxy(
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    app = starlette_app(tracer, trust_baggage_from=["10.0.0.0/24"], trusted_proxies=["10.0.0.1"])
    with TestClient(app, client=("10.0.0.1", 5000)) as client:  # the lifespan passes through
        body = client.get("/", headers={"baggage": "enduser.id=upstream-user,other=1"}).json()
        forwarded = client.get("/sync", headers={"x-forwarded-for": "203.0.113.9, 10.0.0.1"})
    assert body["actor"] == "upstream-user"
    assert "enduser.id=upstream-user" in body["baggage"]
    assert forwarded.json() == {"actor": None, "baggage": None}
    first, second = exporter.get_finished_spans()
    assert audit_fields(first) == {
        "enduser.id": "upstream-user",
        "client.address": "10.0.0.1",
        "audit.action": "record_view",
        "audit.result": "success",
    }
    assert audit_fields(second) == {
        "client.address": "203.0.113.9",
        "audit.action": "record_view",
        "audit.result": "success",
    }


def test_starlette_websocket_gets_the_actor(tracing: tuple[Tracer, InMemorySpanExporter]) -> None:
    app = starlette_app(tracing[0], trust_baggage_from=["10.0.0.2"])
    for peer, expected in (("10.0.0.2", "ws-user"), ("10.0.0.3", None)):
        with (
            TestClient(app, client=(peer, 5000)) as client,
            client.websocket_connect("/ws", headers={"baggage": "enduser.id=ws-user"}) as ws,
        ):
            assert ws.receive_json() == {"actor": expected}


def test_starlette_authenticated_user_wins_and_is_propagated(
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    with TestClient(starlette_app(tracer, auth=True)) as client:
        signed_in = client.get(
            "/sync",
            headers={"authorization": "Bearer alice", "baggage": "enduser.id=forged"},
        ).json()
        anonymous = client.get("/").json()
    assert signed_in["actor"] == "alice"
    assert signed_in["baggage"] == "enduser.id=alice"
    assert anonymous == {"actor": None, "baggage": None}
    assert [audit_fields(s).get("enduser.id") for s in exporter.get_finished_spans()] == [
        "alice",
        None,
    ]


def test_starlette_get_user_and_trust_options(tracing: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = tracing

    def get_user(scope: dict[str, Any]) -> Actor | None:
        for key, value in scope["headers"]:
            if key == b"x-user":
                return Actor(value.decode(), roles=("support",))
        return None

    app = starlette_app(
        tracer, get_user=get_user, trust_baggage=False, trust_forwarded_for=False, propagate=False
    )
    with TestClient(app) as client:
        assert client.get("/", headers={"x-user": "sam"}).json() == {
            "actor": "sam",
            "baggage": None,
        }
        client.get("/", headers={"baggage": "enduser.id=forged", "x-forwarded-for": "1.2.3.4"})
    sam, untrusted = exporter.get_finished_spans()
    assert audit_fields(sam) == {
        "enduser.id": "sam",
        "user.roles": ("support",),
        "client.address": "testclient",
        "audit.action": "record_view",
        "audit.result": "success",
    }
    assert audit_fields(untrusted) == {
        "client.address": "testclient",
        "audit.action": "record_view",
        "audit.result": "success",
    }


def flask_app(tracer: Tracer, **options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def view() -> dict[str, Any]:
        return handle(tracer)

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:  # runs after the view returned
            with audit_span("export_chunk", tracer=tracer):
                who = current_actor()
                yield f"{who and who.user_id}|{who and who.client_address}"

        return Response(chunks())

    app.wsgi_app = AuditContextWSGIMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


def test_flask_actor_from_baggage_forwarded_for_and_remote_user(
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    proxies = ["127.0.0.1", "10.0.0.0/8"]
    client = flask_app(
        tracer, trust_baggage_from=["127.0.0.1"], trusted_proxies=proxies
    ).test_client()
    from_baggage = client.get("/", headers={"baggage": "enduser.id=upstream-user"}).json
    forwarded = client.get("/", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}).json
    remote_user = client.get(
        "/", environ_base={"REMOTE_USER": "kerberos-kim", "REMOTE_ADDR": "192.0.2.44"}
    ).json
    assert from_baggage == {"actor": "upstream-user", "baggage": "enduser.id=upstream-user"}
    assert forwarded == {"actor": None, "baggage": None}
    assert remote_user == {"actor": "kerberos-kim", "baggage": "enduser.id=kerberos-kim"}
    assert [audit_fields(s) for s in exporter.get_finished_spans()] == [
        {
            "enduser.id": "upstream-user",
            "client.address": "127.0.0.1",
            "audit.action": "record_view",
            "audit.result": "success",
        },
        {"client.address": "203.0.113.9", "audit.action": "record_view", "audit.result": "success"},
        {
            "enduser.id": "kerberos-kim",
            "client.address": "192.0.2.44",
            "audit.action": "record_view",
            "audit.result": "success",
        },
    ]
    assert current_actor() is None


def test_flask_get_user_and_a_streamed_body(tracing: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = tracing
    client = flask_app(tracer, get_user=lambda environ: environ.get("HTTP_X_USER")).test_client()
    assert client.get("/", headers={"X-User": "ursula"}).json == {
        "actor": "ursula",
        "baggage": "enduser.id=ursula",
    }
    assert client.get("/stream", headers={"X-User": "ursula"}).text == "ursula|127.0.0.1"
    assert current_actor() is None
    assert [audit_fields(s).get("enduser.id") for s in exporter.get_finished_spans()] == [
        "ursula",
        "ursula",
    ]
