"""An accounts service instrumented with ``otaudit.instrument``: what a team would write.

Routes (a bearer token is the caller's user name, to keep the example short):

- ``POST /login`` ``{"user", "password"}``: a ``login`` audit span, failure on a bad password;
- ``PUT /users/{user}/role`` ``{"role"}``: a ``role_update`` with old and new values;
- ``GET /customers/{id}``: a ``read`` of a sensitive ``customer_record``;
- ``PUT /config/{key}`` ``{"value"}``: a ``config_change`` audit *log record*;
- ``GET /health``: an ordinary span, not an audit record.

Run it against a local otaudit with ``python -m otaudit.examples.accounts``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otaudit.instrument import AuditContextMiddleware, actor, audit_log, audit_span

PASSWORDS = {"alice": "correct horse", "bob": "hunter2", "carol": "s3cret", "dave": "letmein"}
ROLES = {"alice": "admin", "bob": "viewer", "carol": "editor", "dave": "viewer"}
CONFIG: dict[str, Any] = {"session_timeout": 3600, "mfa_required": False}


def _user_from_token(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value.startswith(b"Bearer "):
            return str(value[7:].decode())
    return None


async def login(request: Request) -> JSONResponse:
    body = await request.json()
    user = str(body.get("user", ""))
    with actor(user), audit_span("login", target=user, resource_type="session") as span:
        if PASSWORDS.get(user) != body.get("password"):
            span.set_attribute("audit.result", "failure")
            return JSONResponse({"error": "invalid credentials"}, 401)
    return JSONResponse({"token": user})


async def update_role(request: Request) -> JSONResponse:
    user = request.path_params["user"]
    new_role = str((await request.json())["role"])
    with audit_span(
        "role_update",
        target=user,
        resource_type="user_permission",
        old=ROLES.get(user),
        new=new_role,
        # The widely used name for a user target, read by the classic auditor query.
        attributes={"audit.target_user": user},
    ):
        ROLES[user] = new_role
    return JSONResponse({"user": user, "role": new_role})


async def read_customer(request: Request) -> JSONResponse:
    customer = request.path_params["customer"]
    with audit_span("read", target=customer, resource_type="customer_record"):
        return JSONResponse({"id": customer, "name": "Example Customer"})


async def change_config(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    value = (await request.json())["value"]
    old = CONFIG.get(key)
    CONFIG[key] = value
    audit_log(
        "config_change",
        "System configuration changed",
        target=key,
        resource_type="system_config",
        old=old,
        new=value,
        attributes={"audit.severity": "high", "audit.change_source": "admin_api"},
    )
    return JSONResponse({key: value})


async def health(request: Request) -> JSONResponse:
    with trace.get_tracer("accounts").start_as_current_span("GET /health"):
        return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    """The accounts service with the audit context middleware in front."""
    app = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/users/{user}/role", update_role, methods=["PUT"]),
            Route("/customers/{customer}", read_customer, methods=["GET"]),
            Route("/config/{key}", change_config, methods=["PUT"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.add_middleware(AuditContextMiddleware, get_user=_user_from_token, trust_baggage=False)
    return app


def main() -> None:
    """Serve the example on 127.0.0.1:8000, exporting to otaudit on 127.0.0.1:4318."""
    import uvicorn

    from otaudit.examples.telemetry import setup

    setup("http://127.0.0.1:4318")
    uvicorn.run(create_app(), host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
