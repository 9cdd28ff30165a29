"""Alerts and their triage, as ledger records.

An alert is an OTLP log record of the service ``otaudit`` (pipeline
``otaudit``) with ``audit.action`` = ``otaudit.alert``, sealed like any other
record: the evidence that monitoring happened is as tamper-evident as the
trail it watched. Its time is when it was raised: the receive time (the
server's clock) of the record that triggered it, never the time that record
claims, which the alert keeps apart as ``audit.alert.evidence_time``. Its
content is a function of the finding and that receive time alone (no host
name), so finding the same thing again (after a restart, on another node, by
``otaudit detect``) gives the same bytes and the ledger keeps it once.

Findings of one rule and group within one window are grouped
(:mod:`~otaudit.detect.grouping`): the first raises the alert, the rest are
summed up in one ``otaudit.alert_update`` record when the window closes;
:func:`read_alerts` shows an alert with its summary.

Triage (``otaudit alerts ack``) appends an ``otaudit.alert_triage`` record:
who, when, which alert, the decision and a note. Detection then triage is
the CC7.2/CC7.3 evidence an auditor samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otaudit.access import Reader, log_request, seal_request
from otaudit.detect.engine import ALERT_ACTION, ALERT_UPDATE_ACTION, TRIAGE_ACTION
from otaudit.detect.grouping import Grouped, Note, Raised
from otaudit.detect.state import Finding
from otaudit.errors import ConfigError, NotFound
from otaudit.ownrecords import Appender, append_one
from otaudit.record import Entry, rfc3339_ns
from otaudit.store.base import Store

#: The actor of alert records.
DETECTOR: Final = Reader("otaudit-detect")
#: Triage decisions; the first two leave an alert open, the others close it.
DECISIONS: Final = ("investigating", "escalated", "resolved", "false_positive", "accepted_risk")
OPEN_DECISIONS: Final = frozenset(DECISIONS[:2])
#: OTLP severity (number, text) of each rule severity.
_SEVERITY: Final = {"low": (9, "INFO"), "medium": (13, "WARN"), "high": (17, "ERROR"),
                    "critical": (21, "FATAL")}  # fmt: skip

log = logging.getLogger("otaudit.alerts")


def _identity(finding: Finding) -> dict[str, str | int]:
    """The attributes an alert and its window's summary share: which alert, of which rule."""
    rule = finding.rule
    return {
        "audit.target": finding.alert_id,
        "audit.result": "detected",
        "audit.alert.id": finding.alert_id,
        "audit.alert.rule": rule.name,
        "audit.alert.rule_fingerprint": rule.fingerprint,
        "audit.alert.severity": rule.severity,
        "audit.alert.group": orjson.dumps(finding.group, option=orjson.OPT_SORT_KEYS).decode(),
    }


def alert_request(finding: Finding, raised_ns: int | None = None) -> ExportLogsServiceRequest:
    """The OTLP log record of an alert (sealed into the ledger, and exported as is), dated
    ``raised_ns`` (see :class:`~otaudit.detect.grouping.Raised`; without it, the evidence's
    own time, as alerts were dated before they were dated by when they were raised)."""
    rule = finding.rule
    attributes: dict[str, str | int] = {
        **_identity(finding),
        "audit.alert.kind": rule.kind,
        "audit.alert.summary": finding.summary,
        "audit.alert.count": finding.count,
        "audit.alert.trigger_seq": finding.trigger_seq,
        "audit.alert.evidence_seqs": ",".join(str(s) for s in finding.evidence),
        "audit.alert.evidence_time": rfc3339_ns(finding.time_ns),
    }
    if finding.value is not None:
        attributes["audit.alert.value"] = finding.value
    return log_request(DETECTOR, ALERT_ACTION, "alert", finding.summary, attributes,
                       time_ns=finding.time_ns if raised_ns is None else raised_ns,
                       severity=_SEVERITY[rule.severity], host=False)  # fmt: skip


def update_request(grouped: Grouped) -> ExportLogsServiceRequest:
    """The OTLP log record summing up a grouped alert's window (``otaudit.alert_update``),
    dated at the window's end; a function of the findings in the window alone."""
    finding = grouped.alert.finding
    rule = finding.rule
    attributes: dict[str, str | int] = {
        **_identity(finding),
        "audit.alert.findings": grouped.count,
        "audit.alert.first_time": rfc3339_ns(grouped.alert.raised_ns),
        "audit.alert.last_time": rfc3339_ns(grouped.last_ns),
        "audit.alert.last_seq": grouped.last_seq,
        "audit.alert.window_start": rfc3339_ns(grouped.window_start_ns),
        "audit.alert.window_end": rfc3339_ns(grouped.window_end_ns),
        "audit.alert.grouped_seqs": ",".join(str(s) for s in grouped.sample),
    }
    return log_request(DETECTOR, ALERT_UPDATE_ACTION, "alert", _update_text(grouped),
                       attributes, time_ns=grouped.window_end_ns,
                       severity=_SEVERITY[rule.severity], host=False)  # fmt: skip


def _update_text(grouped: Grouped) -> str:
    more = grouped.count - 1
    return (
        f"alert {grouped.alert_id} ({grouped.alert.finding.rule.name}): {more} more "
        f"finding(s) like it up to {rfc3339_ns(grouped.last_ns)}, {grouped.count} in all"
    )


def note_request(note: Note) -> ExportLogsServiceRequest:
    """The record of an alert raised, or of a grouped alert's summary."""
    if isinstance(note, Grouped):
        return update_request(note)
    return alert_request(note.finding, note.raised_ns)


def alert_entry(finding: Finding, raised_ns: int | None = None) -> Entry:
    """The sealed alert record of a finding (dated ``raised_ns``, see :func:`alert_request`)."""
    return seal_request(alert_request(finding, raised_ns))


def triage_request(
    reader: Reader, alert_id: str, decision: str, note: str, *, time_ns: int | None = None
) -> ExportLogsServiceRequest:
    """The OTLP log record of one triage decision on an alert, dated ``time_ns`` (default:
    now)."""
    attributes: dict[str, str | int] = {
        "audit.target": alert_id,
        "audit.result": "success",
        "audit.alert.id": alert_id,
        "audit.alert.decision": decision,
        "audit.alert.note": note,
    }
    body = f"{reader.actor} marked alert {alert_id} {decision}"
    return log_request(reader, TRIAGE_ACTION, "alert", body, attributes, time_ns=time_ns)


def triage_entry(reader: Reader, alert_id: str, decision: str, note: str) -> Entry:
    """The sealed record of one triage decision on an alert."""
    return seal_request(triage_request(reader, alert_id, decision, note))


def record_triage(
    appender: Appender, reader: Reader, alert_id: str, decision: str, note: str
) -> int:
    """Record ``reader``'s triage decision on an alert (:func:`triage_entry`); its seq."""
    return append_one(appender, triage_entry(reader, alert_id, decision, note))


def finding_json(finding: Finding, raised_ns: int | None = None) -> dict[str, Any]:
    """A finding as JSON (``otaudit detect --format json``, webhook bodies): ``time`` when it
    was raised, ``evidence_time`` the time its triggering record claims."""
    return {
        "id": finding.alert_id,
        "time": rfc3339_ns(finding.time_ns if raised_ns is None else raised_ns),
        "evidence_time": rfc3339_ns(finding.time_ns),
        "rule": finding.rule.name,
        "severity": finding.rule.severity,
        "kind": finding.rule.kind,
        "summary": finding.summary,
        "group": finding.group,
        "count": finding.count,
        "trigger_seq": finding.trigger_seq,
        "evidence_seqs": list(finding.evidence),
    }


def note_json(note: Note) -> dict[str, Any]:
    """An alert raised (:func:`finding_json`), or a grouped alert's summary: ``update`` is
    ``grouped``, ``findings`` how many in the window, the first and last time, a sample of
    their triggering records (``grouped_seqs``)."""
    if isinstance(note, Raised):
        return finding_json(note.finding, note.raised_ns)
    finding = note.alert.finding
    return {
        "id": note.alert_id,
        "update": "grouped",
        "time": rfc3339_ns(note.window_end_ns),
        "rule": finding.rule.name,
        "severity": finding.rule.severity,
        "kind": finding.rule.kind,
        "summary": _update_text(note),
        "group": finding.group,
        "findings": note.count,
        "first_time": rfc3339_ns(note.alert.raised_ns),
        "last_time": rfc3339_ns(note.last_ns),
        "grouped_seqs": list(note.sample),
    }


@dataclass
class Triage:
    """One triage decision as recorded."""

    seq: int
    time: str
    actor: str
    decision: str
    note: str


@dataclass
class AlertView:
    """An alert as the ledger holds it, with its triage history (oldest first)."""

    alert_id: str
    seq: int
    time: str
    rule: str
    severity: str
    summary: str
    #: The alert record's ``audit.alert.*`` attributes (group, count, evidence ...).
    details: dict[str, str] = field(default_factory=dict)
    triage: list[Triage] = field(default_factory=list)
    #: The ``audit.alert.*`` attributes of the summary of its window, if findings were
    #: grouped into it (the fullest one, should there be several).
    grouped: dict[str, str] = field(default_factory=dict)

    @property
    def findings(self) -> int:
        """How many findings the alert stands for: itself and those grouped into it."""
        return int(self.grouped.get("audit.alert.findings", 1))

    @property
    def evidence(self) -> tuple[int, ...]:
        """The sequence numbers of the records that make the alert."""
        return tuple(_seqs(self.details.get("audit.alert.evidence_seqs", "")))

    @property
    def state(self) -> str:
        """``open`` (no decision yet), or the latest decision."""
        return self.triage[-1].decision if self.triage else "open"

    @property
    def is_open(self) -> bool:
        """Whether the alert still needs work (no decision, or investigating/escalated)."""
        return not self.triage or self.triage[-1].decision in OPEN_DECISIONS

    def as_json(self) -> dict[str, Any]:
        """The alert and its triage as JSON."""
        return {
            "id": self.alert_id, "seq": self.seq, "time": self.time, "rule": self.rule,
            "severity": self.severity, "summary": self.summary, "state": self.state,
            "group": _json_or_text(self.details.get("audit.alert.group", "{}")),
            "evidence_seqs": list(self.evidence), "triage": [vars(t) for t in self.triage],
            "evidence_time": self.details.get("audit.alert.evidence_time"),
            "findings": self.findings,
        } | ({"first_time": self.grouped.get("audit.alert.first_time"),
              "last_time": self.grouped.get("audit.alert.last_time"),
              "grouped_seqs": _seqs(self.grouped.get("audit.alert.grouped_seqs", ""))}
             if self.grouped else {})  # fmt: skip


def _seqs(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.isdigit()]


def _json_or_text(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _attributes(value: Any) -> dict[str, str]:
    return value if isinstance(value, dict) else orjson.loads(value or "{}")


def read_alerts(store: Store, *, since_ns: int | None = None) -> list[AlertView]:
    """Every alert in the ledger raised from ``since_ns`` on (by the alert's own time, when it
    was raised, not the time its evidence claims), oldest first, with its triage and the
    summary of the findings grouped into it."""
    alerts: dict[str, AlertView] = {}
    triage: list[tuple[str, Triage]] = []
    updates: list[tuple[str, dict[str, str]]] = []
    rows = store.action_rows((ALERT_ACTION, ALERT_UPDATE_ACTION, TRIAGE_ACTION), since_ns=None)
    for seq, time_ns, actor, target, raw in rows:
        attrs = _attributes(raw)
        alert_id = attrs.get("audit.alert.id") or target or ""
        action = attrs.get("audit.action")
        details = {k: v for k, v in attrs.items() if k.startswith("audit.alert.")}
        if action == ALERT_ACTION:
            if since_ns is not None and time_ns < since_ns:
                continue
            alerts.setdefault(alert_id, AlertView(
                alert_id, int(seq), rfc3339_ns(int(time_ns)), attrs.get("audit.alert.rule", ""),
                attrs.get("audit.alert.severity", ""), attrs.get("audit.alert.summary", ""),
                details,
            ))  # fmt: skip
        elif action == ALERT_UPDATE_ACTION:
            updates.append((alert_id, details))
        else:
            triage.append((alert_id, Triage(int(seq), rfc3339_ns(int(time_ns)), actor or "",
                                            attrs.get("audit.alert.decision", ""),
                                            attrs.get("audit.alert.note", ""))))  # fmt: skip
    for alert_id, decision in triage:
        if alert_id in alerts:
            alerts[alert_id].triage.append(decision)
    for alert_id, update in updates:
        alert = alerts.get(alert_id)
        if alert is not None and _count(update) > _count(alert.grouped):
            alert.grouped = update
    return list(alerts.values())


def _count(update: dict[str, str]) -> int:
    text = str(update.get("audit.alert.findings", "0"))
    return int(text) if text.isdigit() else 0


#: The shortest alert id prefix ``alerts ack`` takes.
MIN_PREFIX: Final = 6


def find_alert(store: Store, alert_id: str) -> AlertView:
    """The alert with this id, or with this unique id prefix (at least 6 characters).

    NotFound when there is none, ConfigError for a prefix that is too short or ambiguous.
    """
    alerts = read_alerts(store)
    for alert in alerts:
        if alert.alert_id == alert_id:
            return alert
    if len(alert_id) < MIN_PREFIX:
        raise ConfigError(
            f"alert id {alert_id!r}: a prefix needs at least {MIN_PREFIX} characters"
            " (`otaudit alerts` lists the ids)"
        )
    matches = [a for a in alerts if a.alert_id.startswith(alert_id)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"alert id prefix {alert_id!r} is ambiguous ({len(matches)} alerts)")
    raise NotFound(f"no alert {alert_id!r} in the ledger (`otaudit alerts` lists them)")


def log_alert(alert: dict[str, Any], seq: int) -> None:
    """One log line per new alert or summary (the ``otaudit.alerts`` logger); ``alert`` as
    :func:`note_json` gives it."""
    if alert.get("update"):
        log.warning("ALERT %s [%s] %s: %s (ledger seq %d)", alert["id"], alert["severity"],
                    alert["rule"], alert["summary"], seq)  # fmt: skip
        return
    evidence = ",".join(map(str, alert["evidence_seqs"][:10]))
    log.warning("ALERT %s [%s] %s: %s (ledger seq %d, evidence seqs %s)", alert["id"],
                alert["severity"], alert["rule"], alert["summary"], seq, evidence)  # fmt: skip
