"""An accounts service instrumented with ``otaudit.instrument``: what a team would write.

Routes (a caller authenticates with the bearer token ``POST /login`` issued, or one
passed to :func:`create_app`):

- ``POST /login`` ``{"user", "password"}``: a ``login`` audit span, failure on a bad password;
  on success the answer holds a new random token;
- ``PUT /users/{user}/role`` ``{"role"}``: a ``role_update`` with old and new values;
- ``GET /customers/{id}``: a ``read`` of a sensitive ``customer_record``;
- ``PUT /config/{key}`` ``{"value"}``: a ``config_change`` audit *log record*;
- ``GET /health``: an ordinary span, not an audit record.

Run it against a local otaudit with ``python -m otaudit.examples.accounts``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otaudit.instrument import AuditContextMiddleware, actor, audit_log, audit_span, current_actor

PASSWORDS = {"alice": "correct horse", "bob": "hunter2", "carol": "s3cret", "dave": "letmein"}
ROLES = {"alice": "admin", "bob": "viewer", "carol": "editor", "dave": "viewer"}
CONFIG: dict[str, Any] = {"session_timeout": 3600, "mfa_required": False}


class Sessions:
    """The tokens the service has issued (token -> user id): the service's authentication.

    The actor of every audit record comes from here, never from what a caller
    claims in a header or in baggage.
    """

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._users = dict(tokens or {})

    def issue(self, user: str) -> str:
        """A new random token for ``user``."""
        token = secrets.token_urlsafe(24)
        self._users[token] = user
        return token

    def user(self, scope: Mapping[str, Any]) -> str | None:
        """The user a request's ``Authorization: Bearer`` token was issued to, else None."""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return self._users.get(value[7:].decode("latin-1"))
        return None


def _login(sessions: Sessions) -> Any:
    async def login(request: Request) -> JSONResponse:
        body = await request.json()
        user = str(body.get("user", ""))
        # The name is only claimed until the password matches; the record says so with its result.
        with actor(user), audit_span("login", target=user, resource_type="session") as span:
            if PASSWORDS.get(user) != body.get("password"):
                span.set_attribute("audit.result", "failure")
                return JSONResponse({"error": "invalid credentials"}, 401)
        return JSONResponse({"token": sessions.issue(user)})

    return login


def _anonymous() -> JSONResponse | None:
    """A 401 answer when the request carries no token the service issued."""
    who = current_actor()
    if who is None or who.user_id is None:
        return JSONResponse({"error": "sign in first"}, 401)
    return None


async def update_role(request: Request) -> JSONResponse:
    """PUT /users/{user}/role: change a user's role (an audit span)."""
    if (refused := _anonymous()) is not None:
        return refused
    user = request.path_params["user"]
    new_role = str((await request.json())["role"])
    with audit_span(
        "role_update",
        target_user=user,  # also audit.target_user, read by the classic auditor query
        resource_type="user_permission",
        old=ROLES.get(user),
        new=new_role,
    ):
        ROLES[user] = new_role
    return JSONResponse({"user": user, "role": new_role})


async def read_customer(request: Request) -> JSONResponse:
    """GET /customers/{customer}: read a customer record (an audit span)."""
    customer = request.path_params["customer"]
    with audit_span("read", target=customer, resource_type="customer_record"):
        return JSONResponse({"id": customer, "name": "Example Customer"})


async def change_config(request: Request) -> JSONResponse:
    """PUT /config/{key}: change a setting (an audit log record)."""
    if (refused := _anonymous()) is not None:
        return refused
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
    """GET /health: a span that is not an audit record."""
    with trace.get_tracer("accounts").start_as_current_span("GET /health"):
        return JSONResponse({"status": "ok"})


def create_app(tokens: Mapping[str, str] | None = None) -> Starlette:
    """The accounts service with the audit context middleware in front.

    ``tokens`` (token -> user id) are accepted besides those ``POST /login`` issues.
    """
    sessions = Sessions(tokens)
    app = Starlette(
        routes=[
            Route("/login", _login(sessions), methods=["POST"]),
            Route("/users/{user}/role", update_role, methods=["PUT"]),
            Route("/customers/{customer}", read_customer, methods=["GET"]),
            Route("/config/{key}", change_config, methods=["PUT"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    # The defaults believe no caller: baggage never names the actor and the socket peer is
    # the client. Behind a reverse proxy, add trusted_proxies=["<its address>"].
    app.add_middleware(AuditContextMiddleware, get_user=sessions.user)
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m otaudit.examples.accounts [--listen HOST:PORT] [--otaudit URL]``."""
    import argparse

    import uvicorn

    from otaudit.examples.telemetry import setup

    parser = argparse.ArgumentParser(
        prog="python -m otaudit.examples.accounts",
        description="The example accounts service, instrumented with otaudit.instrument:"
        " its audit spans and log records go to otaudit over OTLP/HTTP.",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8000", metavar="HOST:PORT",
        help="where the service listens (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--otaudit", default="http://127.0.0.1:4318", metavar="URL",
        help="otaudit's OTLP/HTTP address (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen expects HOST:PORT, got {args.listen!r}")
    setup(args.otaudit)
    uvicorn.run(create_app(), host=host.strip("[]"), port=int(port))


if __name__ == "__main__":
    main()
