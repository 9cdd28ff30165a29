"""The console's Starlette application: routes, sessions, security headers, error pages.

Every response carries the console's Content-Security-Policy (:data:`SECURITY_HEADERS`):
scripts and styles from the console's own static files only, images also as ``data:``
URIs (the overview's charts), no framing, forms posting to the console only. No CORS
header is ever sent. A page handler runs in a worker thread with a :class:`~.web.Ctx`;
the session is checked (and the token table read again) on every request, and a POST
must carry the session's CSRF token.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otaudit import access
from otaudit.auth import token_hash
from otaudit.console import alerts, evidence, overview, record, records, sqlpage
from otaudit.console.service import ConsoleService
from otaudit.console.session import COOKIE, SESSION_S, Session, session_for
from otaudit.console.web import ENV, Ctx, PageError, error_page
from otaudit.errors import Forbidden, OtauditError, Overloaded, StoreError, Unauthenticated
from otaudit.store.base import StoredToken

SECURITY_HEADERS: Final = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
MAX_FORM_BYTES: Final = 64 * 1024
_TOKEN_ID_RE: Final = re.compile(r"otaudit_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_STATIC: Final = Path(__file__).parent / "static"

Handler = Callable[[Ctx], Response]


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k not in names]
                message["headers"] = headers + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, sending)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (bounded), last value of each field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PageError(413, f"the form is over {MAX_FORM_BYTES} bytes")
    if not body:
        return {}  # no fields: a POST without its CSRF token, refused as such
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise PageError(415, "send the form as application/x-www-form-urlencoded")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PageError(400, f"the form cannot be read: {exc}") from None


def _same_origin(request: Request) -> None:
    """None unless the browser says the form comes from another site (Forbidden).

    ``Sec-Fetch-Site``, when sent (browsers set it, pages cannot), must be ``same-origin``.
    ``Origin``, when sent, must name this console's own host, or be ``null`` with
    ``Sec-Fetch-Site: same-origin``: under the console's ``Referrer-Policy: no-referrer`` a
    browser serializes the origin of the console's own forms as ``null`` (Fetch, "serializing
    a request origin"), so the host alone would refuse every form posted from a browser."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise Forbidden(f"a form from another site ({site}) may not post to this console")
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null" and site == "same-origin":
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc.lower() != host.lower():
        raise Forbidden(f"a form from {origin!r} may not post to this console")


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _api_error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status, media_type="application/json")


def _signin_redirect() -> Response:
    response = RedirectResponse("/console/signin", 303)
    response.delete_cookie(COOKIE, path="/console/")
    return response


def build_console_app(service: ConsoleService) -> Starlette:
    """The Starlette application of the console (everything under ``/console/``)."""

    def tokens() -> list[StoredToken]:
        with service.store() as store:
            return store.tokens()

    def page(handler: Handler, *, api: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if request.method == "POST":
                    _same_origin(request)
                form = await _form(request) if request.method == "POST" else {}

                def work() -> Response:
                    table = tokens()
                    cookie = request.cookies.get(COOKIE)
                    session = session_for(service.sessions, cookie, table, bool(table))
                    if request.method == "POST":
                        service.sessions.check_csrf(session.session_id, form.get("csrf"))
                    reader = access.Reader(session.name, _client(request), session.token_id)
                    ctx = Ctx(service, session, reader, request.query_params,
                              request.path_params, form, bool(table))  # fmt: skip
                    return handler(ctx)

                return await run_in_threadpool(work)
            except Unauthenticated as exc:
                return _api_error(401, str(exc)) if api else _signin_redirect()
            except Forbidden as exc:
                return _api_error(403, str(exc)) if api else error_page(403, str(exc))
            except PageError as exc:
                return _api_error(exc.status, exc.message) if api else error_page(
                    exc.status, exc.message)  # fmt: skip
            except Overloaded as exc:
                response = error_page(503, str(exc))
                response.headers["Retry-After"] = str(exc.retry_after_s or 1)
                return response
            except StoreError as exc:
                return error_page(503, f"the store is unavailable: {exc}")
            except OtauditError as exc:
                return _api_error(400, str(exc)) if api else error_page(400, str(exc))

        return endpoint

    async def signin_form(request: Request) -> Response:
        html = ENV.get_template("signin.html.j2").render(
            page="signin", session=None, csrf="", auth_required=True, message=None
        )
        return Response(html, media_type="text/html")

    async def signin(request: Request) -> Response:
        try:
            _same_origin(request)
            form = await _form(request)
        except Forbidden as exc:
            return error_page(403, str(exc))
        except PageError as exc:
            return error_page(exc.status, exc.message)
        text = form.get("token", "").strip()

        def check() -> Session | str:
            table = tokens()
            if not table:
                return "this ledger has no API tokens: the console needs no sign-in"
            match = _TOKEN_ID_RE.fullmatch(text)
            token = None if match is None else next(
                (t for t in table if t.token_id == match[1]), None)  # fmt: skip
            if token is None or not hmac.compare_digest(token.token_hash, token_hash(text)):
                return "unknown token"
            if token.revoked_at is not None:
                return f"token {token.token_id} was revoked at {token.revoked_at}"
            if not {"read", "admin"} & set(token.scopes.split(",")):
                return f"token {token.token_id} lacks the read and admin scopes"
            return Session(token.token_id, token.name, (), "", 0)

        try:
            outcome = await run_in_threadpool(check)
        except StoreError as exc:
            return error_page(503, f"the store is unavailable: {exc}")
        if isinstance(outcome, str):
            html = ENV.get_template("signin.html.j2").render(
                page="signin", session=None, csrf="", auth_required=True, message=outcome
            )
            return Response(html, 401, media_type="text/html")
        assert outcome.token_id is not None
        response = RedirectResponse("/console/", 303)
        response.set_cookie(
            COOKIE, service.sessions.issue(outcome.token_id), max_age=SESSION_S,
            path="/console/", secure=service.tls, httponly=True, samesite="strict",
        )  # fmt: skip
        return response

    def signout(ctx: Ctx) -> Response:
        response = RedirectResponse("/console/signin", 303)
        response.delete_cookie(COOKIE, path="/console/")
        return response

    async def root(request: Request) -> Response:
        return RedirectResponse("/console/", 308)

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_page(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    routes: list[Any] = [
        Route("/console", root, methods=["GET"]),
        Route("/console/signin", signin_form, methods=["GET"]),
        Route("/console/signin", signin, methods=["POST"]),
        Route("/console/signout", page(signout), methods=["POST"]),
        Route("/console/", page(overview.overview_page), methods=["GET"]),
        Route("/console/records", page(records.records_page), methods=["GET"]),
        Route("/console/records/views", page(records.save_view), methods=["POST"]),
        Route("/console/records/export.csv", page(records.export_csv), methods=["GET"]),
        Route("/console/records/export.jsonl", page(records.export_jsonl), methods=["GET"]),
        Route("/console/records/{seq:int}", page(record.record_page), methods=["GET"]),
        Route("/console/sql", page(sqlpage.sql_page), methods=["GET"]),
        Route("/console/sql/queries", page(sqlpage.save_query), methods=["POST"]),
        Route("/console/alerts", page(alerts.alerts_page), methods=["GET"]),
        Route("/console/alerts/{alert_id}", page(alerts.alert_page), methods=["GET"]),
        Route("/console/alerts/{alert_id}/ack", page(alerts.ack), methods=["POST"]),
        Route("/console/evidence", page(evidence.evidence_page), methods=["GET"]),
        Route("/console/evidence", page(evidence.build), methods=["POST"]),
        Route("/console/settings", page(evidence.settings_page), methods=["GET"]),
        Route("/console/api/proof/{seq:int}", page(record.proof, api=True), methods=["GET"]),
        Route("/console/api/verifier-key", page(evidence.verifier_key, api=True), methods=["GET"]),
        Mount("/console/static", StaticFiles(directory=_STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.add_middleware(SecurityHeaders)
    return app
