"""What every page handler gets (:class:`Ctx`) and how pages are rendered.

Templates are Jinja2 with autoescaping on for every template, whatever its name: every
value from the ledger (attributes, names, bodies: attacker-controlled, written by any
OTLP client) is escaped, and no value is ever placed where a URL scheme could be read
(links are built from sequence numbers and ``urlencode``, never from a value's text).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
from starlette.datastructures import QueryParams
from starlette.responses import HTMLResponse

from otaudit import access
from otaudit.console.service import ConsoleService
from otaudit.console.session import Session

PREFIX: Final = "/console"

ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("otaudit.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _query(values: Mapping[str, Any] | list[tuple[str, str]]) -> str:
    """A query string (``urlencode``); usable in templates as ``query(...)``."""
    items = values.items() if isinstance(values, Mapping) else values
    return urlencode([(k, str(v)) for k, v in items if v not in (None, "")])


def _svg_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


ENV.globals["query"] = _query
ENV.filters["svg_uri"] = _svg_uri
NAV: Final = (
    ("overview", "Overview", "/console/"),
    ("records", "Records", "/console/records"),
    ("sql", "SQL", "/console/sql"),
    ("alerts", "Alerts", "/console/alerts"),
    ("evidence", "Evidence", "/console/evidence"),
    ("settings", "Settings", "/console/settings"),
)
ENV.globals["nav"] = NAV


class PageError(Exception):
    """A page cannot be shown: the status and what to tell the reader."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Ctx:
    """One request, as a page handler sees it (in a worker thread)."""

    service: ConsoleService
    session: Session
    reader: access.Reader
    params: QueryParams
    path: Mapping[str, Any]
    form: dict[str, str] = field(default_factory=dict)
    auth_required: bool = True

    @property
    def csrf(self) -> str:
        """The CSRF token of this session's forms."""
        return self.service.sessions.csrf(self.session.session_id)

    def render(self, template: str, page: str, status: int = 200, **values: Any) -> HTMLResponse:
        """The page ``template`` with ``values``, the session and the navigation."""
        html = ENV.get_template(template).render(
            page=page,
            session=self.session,
            csrf=self.csrf,
            auth_required=self.auth_required,
            **values,
        )
        return HTMLResponse(html, status)

    def record(self, text: str, **outcome: Any) -> None:
        """Record this page view in the ledger (kind ``console``) before answering."""
        self.service.record(self.reader, text, **outcome)


def error_page(status: int, message: str) -> HTMLResponse:
    """A page saying what went wrong (no session needed to render it)."""
    html = ENV.get_template("error.html.j2").render(
        page="error", session=None, csrf="", auth_required=True, status=status, message=message
    )
    return HTMLResponse(html, status)
