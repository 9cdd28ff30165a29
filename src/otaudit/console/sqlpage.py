"""The SQL page: read-only SQL over the audit views, as ``otaudit sql`` runs it.

The statement runs through :func:`otaudit.query.run_sql` in the read service's query
workers (read-only connections, the same dialect, time and size limits as the CLI and
the read API); an error reads as the CLI prints it (``otaudit: error: ...``). Results
are paged by row offset (``page``), up to the read API's :data:`MAX_SQL_ROWS`. Saved
queries are kept like saved views (:mod:`otaudit.console.service`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from starlette.responses import RedirectResponse, Response

from otaudit.console.web import Ctx, PageError
from otaudit.dialect import AUDITOR_QUERY
from otaudit.errors import QueryError
from otaudit.query import json_cell, query_target, run_sql, truncation_notice
from otaudit.readapi.openapi import MAX_SQL_ROWS

PAGE_ROWS: Final = 100
MAX_STATEMENT: Final = 65_536
_MAX_PAGE: Final = MAX_SQL_ROWS // PAGE_ROWS


def sql_page(ctx: Ctx) -> Response:
    """``GET /console/sql?q=...&page=N``: the editor, and the statement's page of rows."""
    statement = (ctx.params.get("q") or "").strip()
    try:
        page = int(ctx.params.get("page") or 0)
    except ValueError:
        page = -1
    if not 0 <= page < _MAX_PAGE:
        raise PageError(400, f"page must be an integer from 0 to {_MAX_PAGE - 1}")
    if len(statement) > MAX_STATEMENT:
        raise PageError(400, f"the statement is over {MAX_STATEMENT} characters")
    saved = ctx.service.saved(ctx.session.owner)["queries"]
    values: dict[str, Any] = {
        "statement": statement, "example": AUDITOR_QUERY, "saved": saved, "page_no": page,
        "columns": [], "rows": [], "error": None, "notice": None, "more": False,
    }  # fmt: skip
    if not statement:
        ctx.record("GET /console/sql (the editor)", ok=True, rows=0)
        return ctx.render("sql.html.j2", "sql", **values)
    offset = page * PAGE_ROWS
    limits = replace(ctx.service.read.limits, max_rows=offset + PAGE_ROWS)
    text = statement + (f"\n-- console page {page}" if page else "")
    with ctx.service.store() as store:
        target = query_target(store, ctx.service.read.query_url)
    try:
        result = run_sql(target, statement, limits, ctx.service.read.sql_runner)
    except QueryError as exc:
        ctx.record(text, ok=False, error=str(exc))
        values["error"] = f"otaudit: error: {exc}"
        return ctx.render("sql.html.j2", "sql", status=400, **values)
    rows = result.rows[offset:]
    ctx.record(text, ok=True, rows=len(rows))
    values |= {
        "columns": result.columns,
        "rows": [["" if v is None else json_cell(v) for v in row] for row in rows],
        "more": result.truncated == "rows" and offset + PAGE_ROWS < MAX_SQL_ROWS,
        "notice": truncation_notice(result, limits) if result.truncated == "bytes" else None,
    }
    return ctx.render("sql.html.j2", "sql", **values)


def save_query(ctx: Ctx) -> Response:
    """``POST /console/sql/queries``: keep a statement under a name."""
    statement = ctx.form.get("q", "")
    try:
        ctx.service.save(ctx.session.owner, "queries", ctx.form.get("name", ""), statement)
    except ValueError as exc:
        raise PageError(400, str(exc)) from None
    return RedirectResponse("/console/sql", 303)
