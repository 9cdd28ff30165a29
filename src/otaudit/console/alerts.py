"""The Alerts pages: open and triaged alerts, one alert's evidence, and triage.

Triage (``POST /console/alerts/{id}/ack``, admin tokens only, CSRF) seals an
``otaudit.alert_triage`` record through the sequencer, exactly as ``otaudit alerts ack``
does (:func:`otaudit.detect.alerts.record_triage`), with the signed-in token as actor.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from otaudit.console.web import Ctx, PageError
from otaudit.detect.alerts import DECISIONS, AlertView, read_alerts, record_triage
from otaudit.errors import Forbidden
from otaudit.store.search import SEARCH_COLUMNS, SearchFilter

STATES: Final = ("open", "triaged", "all")
MAX_NOTE: Final = 4096
"""The longest triage note (as ``otaudit alerts ack --note``)."""
MAX_EVIDENCE: Final = 200


def _find(alerts: list[AlertView], alert_id: str) -> AlertView:
    for alert in alerts:
        if alert.alert_id == alert_id:
            return alert
    raise PageError(404, f"no alert {alert_id!r} in the ledger")


def alerts_page(ctx: Ctx) -> Response:
    """``GET /console/alerts?rule=&state=``: the alerts, newest first."""
    state = ctx.params.get("state") or "open"
    rule = ctx.params.get("rule") or ""
    if state not in STATES:
        raise PageError(400, f"state must be one of {', '.join(STATES)}")
    with ctx.service.store() as store:
        every = read_alerts(store)
    rules = sorted({a.rule for a in every})
    shown = [a for a in reversed(every)
             if (not rule or a.rule == rule)
             and (state == "all" or a.is_open == (state == "open"))]  # fmt: skip
    ctx.record(f"GET /console/alerts state={state} rule={rule}", ok=True, rows=len(shown))
    return ctx.render("alerts.html.j2", "alerts", alerts=shown, rules=rules, rule=rule,
                      state=state, states=STATES)  # fmt: skip


def alert_page(ctx: Ctx) -> Response:
    """``GET /console/alerts/{id}``: the alert, its triage history, its evidence records and
    (for an admin token) the triage form."""
    alert_id = str(ctx.path["alert_id"])
    with ctx.service.store() as store:
        alert = _find(read_alerts(store), alert_id)
        seqs = alert.evidence[:MAX_EVIDENCE]
        evidence = [dict(zip(SEARCH_COLUMNS, row, strict=True))
                    for row in store.search(SearchFilter(seqs=seqs))] if seqs else []  # fmt: skip
    ctx.record(f"GET /console/alerts/{alert_id}", ok=True, rows=1 + len(evidence))
    return ctx.render("alert.html.j2", "alerts", alert=alert, evidence=evidence,
                      decisions=DECISIONS, max_note=MAX_NOTE)  # fmt: skip


def ack(ctx: Ctx) -> Response:
    """``POST /console/alerts/{id}/ack``: seal a triage decision (admin tokens only)."""
    if not ctx.session.admin:
        raise Forbidden(f"token {ctx.session.token_id} lacks the 'admin' scope: triage needs it")
    alert_id = str(ctx.path["alert_id"])
    decision = ctx.form.get("decision", "")
    note = ctx.form.get("note", "").strip()
    if decision not in DECISIONS:
        raise PageError(400, f"decision must be one of {', '.join(DECISIONS)}")
    if not note:
        raise PageError(400, "the note is empty: say what was looked at and why")
    if len(note) > MAX_NOTE:
        raise PageError(400, f"the note has {len(note)} characters; at most {MAX_NOTE}")
    with ctx.service.store() as store:
        alert = _find(read_alerts(store), alert_id)
    record_triage(ctx.service.read.appender, ctx.reader, alert.alert_id, decision, note)
    return RedirectResponse(f"/console/alerts/{quote(alert.alert_id, safe='')}", 303)
