"""The read API's Starlette application (see :mod:`otaudit.readapi`).

Each request opens its own read-only view of the store, reads, appends the
record of the read through the sequencer (durable before the answer, like an
export), and only then answers. A read that cannot be recorded is not
answered: 503 with Retry-After.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otaudit import access, views
from otaudit.auth import Authenticator, bearer
from otaudit.errors import (
    Forbidden,
    OtauditError,
    Overloaded,
    QueryError,
    StoreError,
    Unauthenticated,
)
from otaudit.ingest import COMMIT_WAIT_S
from otaudit.ledger import Sequencer
from otaudit.ownrecords import SequencerAppender, record_read
from otaudit.query import json_cell, query_target, run_sql
from otaudit.readapi.cursor import CursorSigner
from otaudit.readapi.openapi import MAX_PAGE, MAX_SQL_PAGE, MAX_SQL_ROWS, MAX_TIMEOUT_MS, SPEC
from otaudit.readapi.params import BadRequest, integer, time_text
from otaudit.sqllimits import QueryLimits
from otaudit.sqlworker import SqlRunner
from otaudit.store.base import Store
from otaudit.store.search import EXACT_FILTERS, SEARCH_COLUMNS, SearchFilter
from otaudit.timespec import parse_time

MAX_BODY: Final = 1 << 20
_RECORD_PARAMS: Final = frozenset({*EXACT_FILTERS, "since", "until", "limit", "cursor"})
_SQL_FIELDS: Final = frozenset({"sql", "page_size", "timeout_ms", "cursor"})
_NO_HEAD: Final = (
    "HEAD is not served: a GET of records runs the search and records the read in the"
    " ledger, which HEAD must not do and cannot answer honestly without; use GET"
)


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status, headers, media_type="application/json")


def _error(
    status: int,
    code: str,
    message: str,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    headers = dict(headers or {})
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    return _json({"error": {"code": code, "message": message}}, status, headers)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ReadService:
    """The reads behind the routes: open a store, read, record the read."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        sequencer: Sequencer,
        authn: Authenticator,
        *,
        query_url: str | None = None,
        limits: QueryLimits | None = None,
        sql_workers: int = 2,
        cursor_key: bytes | None = None,
    ) -> None:
        self.open_store = open_store
        self.cursors = CursorSigner(cursor_key)
        self.sequencer = sequencer
        self.appender = SequencerAppender(sequencer, COMMIT_WAIT_S, "the read")
        self.authn = authn
        self.query_url = query_url
        self.limits = limits or QueryLimits()
        self.sql_runner = SqlRunner(sql_workers)

    def close(self) -> None:
        """Stop the query worker processes."""
        self.sql_runner.close()

    def reader(self, authorization: str | None, client: str | None) -> access.Reader:
        """Who is asking (Unauthenticated, Forbidden): the token's name, or anonymous."""
        caller = self.authn.check(bearer(authorization), "read")
        return access.Reader(caller.name, client, caller.token_id)

    def record(self, reader: access.Reader, kind: str, text: str, **outcome: Any) -> None:
        """Append the read's record and wait until it is durable (StoreError, Overloaded)."""
        record_read(self.appender, reader, kind, text, **outcome)

    def records(self, reader: access.Reader, params: dict[str, list[str]]) -> dict[str, Any]:
        """One page of ``GET /api/v1/records``."""
        unknown = sorted(set(params) - _RECORD_PARAMS)
        if unknown:
            raise BadRequest(400, "bad_parameter", f"unknown parameter {unknown[0]!r}")
        single = {k: v[-1] for k, v in params.items() if k in ("since", "until", "limit", "cursor")}
        now = time.time_ns()
        bounds = []
        for name in ("since", "until"):
            try:
                text = time_text(single[name], name) if name in single else None
                bounds.append(None if text is None else parse_time(text, now))
            except ValueError as exc:
                raise BadRequest(400, "bad_parameter", f"{name}: {exc}") from None
        values = {name: tuple(params.get(name, ())) for name in EXACT_FILTERS}
        values["trace_id"] = tuple(v.lower() for v in values["trace_id"])
        where = SearchFilter(values, bounds[0], bounds[1])
        limit = integer(single.get("limit", "100"), "limit", 1, MAX_PAGE)
        question = where.describe() or "(all records)"
        # A cursor belongs to the filters as sent: "since=90d" stays the same question
        # from page to page although the instant it names moves on.
        asked = "&".join(f"{k}={v}" for k in sorted(params) if k not in ("cursor", "limit")
                         for v in params[k])  # fmt: skip
        after = -1
        if "cursor" in single:
            after = self.cursors.decode(single["cursor"], "records", _digest(asked))
        store = self.open_store()
        try:
            rows = list(store.search(where, after_seq=after, limit=limit + 1))
        finally:
            store.close()
        page = rows[:limit]
        more = len(rows) > limit
        text = f"GET /api/v1/records {question}" + (f" after seq {after}" if after >= 0 else "")
        self.record(reader, "search", text, ok=True, rows=len(page))
        return {
            "records": [dict(zip(SEARCH_COLUMNS, row, strict=True)) for row in page],
            "next_cursor": self.cursors.encode("records", page[-1][0], _digest(asked))
            if more
            else None,
        }

    def sql(self, reader: access.Reader, body: dict[str, Any]) -> dict[str, Any]:
        """One page of ``POST /api/v1/sql``."""
        unknown = sorted(set(body) - _SQL_FIELDS)
        if unknown:
            raise BadRequest(400, "bad_parameter", f"unknown field {unknown[0]!r}")
        statement = body.get("sql")
        if not isinstance(statement, str) or not statement.strip():
            raise BadRequest(400, "bad_parameter", "sql must be a non-empty string")
        page_size = integer(body.get("page_size", 1000), "page_size", 1, MAX_SQL_PAGE)
        timeout_ms = integer(body.get("timeout_ms", 30_000), "timeout_ms", 1, MAX_TIMEOUT_MS)
        offset = 0
        if "cursor" in body:
            if not isinstance(body["cursor"], str):
                raise BadRequest(400, "bad_cursor", "cursor must be a string")
            offset = self.cursors.decode(body["cursor"], "sql", _digest(statement), MAX_SQL_ROWS)
        cap = min(offset + page_size, MAX_SQL_ROWS)
        text = statement + (f"\n-- page from row {offset}" if offset else "")
        limits = replace(self.limits, max_rows=cap, timeout_ms=timeout_ms)
        store = self.open_store()
        try:
            target = query_target(store, self.query_url)
        finally:
            store.close()
        try:
            result = run_sql(target, statement, limits, self.sql_runner)
        except QueryError as exc:
            self.record(reader, "sql", text, ok=False, error=str(exc))
            raise BadRequest(400, "bad_sql", str(exc)) from None
        page = result.rows[offset:]
        if offset and not page and result.truncated == "bytes":
            message = f"rows from {offset} on do not fit the {limits.max_result_bytes}-byte limit"
            self.record(reader, "sql", text, ok=False, error=message)
            raise BadRequest(400, "bad_sql", message)
        self.record(reader, "sql", text, ok=True, rows=len(page))
        # A page cut short by bytes goes on where it stopped; by rows, after the cap.
        after = offset + len(page)
        more = result.truncated is not None and after < MAX_SQL_ROWS
        return {
            "columns": result.columns,
            "rows": [[json_cell(v) for v in row] for row in page],
            "next_cursor": self.cursors.encode("sql", after, _digest(statement)) if more else None,
            "truncated": result.truncated is not None and after >= MAX_SQL_ROWS,
        }


async def _answer(work: Callable[[], dict[str, Any]]) -> Response:
    try:
        return _json(await run_in_threadpool(work))
    except Unauthenticated as exc:
        return _error(401, "unauthenticated", str(exc),
                      headers={"WWW-Authenticate": 'Bearer realm="otaudit"'})  # fmt: skip
    except Forbidden as exc:
        return _error(403, "forbidden", str(exc))
    except BadRequest as exc:
        return _error(exc.status, exc.code, exc.message)
    except Overloaded as exc:
        return _error(503, "overloaded", str(exc), exc.retry_after_s)
    except StoreError as exc:
        return _error(503, "store_unavailable", str(exc), 5)
    except OtauditError as exc:
        return _error(400, "bad_request", str(exc))


def _schema(reader: access.Reader) -> dict[str, Any]:
    """``GET /api/v1/schema``: the views and their columns, for a caller who may read."""
    del reader  # allowed to read: that is all the schema needs
    return {
        "views": dict(views.VIEWS),
        "columns": [
            {"name": c.name, "sqlite": c.sqlite, "postgresql": c.postgres, "meaning": c.meaning}
            for c in views.COLUMNS
        ],
    }


def build_read_app(service: ReadService) -> Starlette:
    """The Starlette application of the read API."""

    async def records(request: Request) -> Response:
        if request.method == "HEAD":  # Starlette routes HEAD with GET; a GET here records a read
            return _error(405, "method_not_allowed", _NO_HEAD, headers={"Allow": "GET"})
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        authorization = request.headers.get("authorization")
        client = request.client.host if request.client else None
        return await _answer(lambda: service.records(service.reader(authorization, client), params))

    async def sql(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return _error(415, "unsupported_media_type", "send the request as application/json")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _error(413, "too_large", f"request body over {MAX_BODY} bytes")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, "bad_json", f"request body is not JSON: {exc}")
        if not isinstance(document, dict):
            return _error(400, "bad_json", "request body must be a JSON object")
        authorization = request.headers.get("authorization")
        client = request.client.host if request.client else None
        return await _answer(lambda: service.sql(service.reader(authorization, client), document))

    async def openapi(request: Request) -> Response:
        return _json(SPEC)

    async def schema(request: Request) -> Response:
        # What SQL can read: no audit record is read, so nothing is recorded.
        authorization = request.headers.get("authorization")
        client = request.client.host if request.client else None
        return await _answer(lambda: _schema(service.reader(authorization, client)))

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return _error(exc.status_code, code, message, headers=dict(exc.headers or {}))

    return Starlette(
        routes=[
            Route("/api/v1/records", records, methods=["GET"]),
            Route("/api/v1/sql", sql, methods=["POST"]),
            Route("/api/v1/schema", schema, methods=["GET"]),
            Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        ],
        exception_handlers={HTTPException: not_found},
    )
