"""Alerts and their triage, as ledger records.

An alert is an OTLP log record of the service ``otaudit`` (pipeline
``otaudit``) with ``audit.action`` = ``otaudit.alert``, sealed like any other
record: the evidence that monitoring happened is as tamper-evident as the
trail it watched. Its content is a function of the finding alone (time = the
time of the record that triggered it, no host name), so finding the same
thing again (after a restart, on another node, by ``otaudit detect``) gives
the same bytes and the ledger keeps it once.

Triage (``otaudit alerts ack``) appends an ``otaudit.alert_triage`` record:
who, when, which alert, the decision and a note. Detection then triage is
the CC7.2/CC7.3 evidence an auditor samples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otaudit.access import Reader, log_request, seal_request
from otaudit.detect.engine import ALERT_ACTION, TRIAGE_ACTION
from otaudit.detect.state import Finding
from otaudit.errors import ConfigError
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


def alert_request(finding: Finding) -> ExportLogsServiceRequest:
    """The OTLP log record of an alert (sealed into the ledger, and exported as is)."""
    rule = finding.rule
    attributes: dict[str, str | int] = {
        "audit.target": finding.alert_id,
        "audit.result": "detected",
        "audit.alert.id": finding.alert_id,
        "audit.alert.rule": rule.name,
        "audit.alert.rule_fingerprint": rule.fingerprint,
        "audit.alert.kind": rule.kind,
        "audit.alert.severity": rule.severity,
        "audit.alert.summary": finding.summary,
        "audit.alert.group": orjson.dumps(finding.group, option=orjson.OPT_SORT_KEYS).decode(),
        "audit.alert.count": finding.count,
        "audit.alert.trigger_seq": finding.trigger_seq,
        "audit.alert.evidence_seqs": ",".join(str(s) for s in finding.evidence),
    }
    if finding.value is not None:
        attributes["audit.alert.value"] = finding.value
    return log_request(DETECTOR, ALERT_ACTION, "alert", finding.summary, attributes,
                       time_ns=finding.time_ns, severity=_SEVERITY[rule.severity],
                       host=False)  # fmt: skip


def alert_entry(finding: Finding) -> Entry:
    """The sealed alert record of a finding."""
    return seal_request(alert_request(finding))


def triage_entry(reader: Reader, alert_id: str, decision: str, note: str) -> Entry:
    """The sealed record of one triage decision on an alert."""
    attributes: dict[str, str | int] = {
        "audit.target": alert_id,
        "audit.result": "success",
        "audit.alert.id": alert_id,
        "audit.alert.decision": decision,
        "audit.alert.note": note,
    }
    body = f"{reader.actor} marked alert {alert_id} {decision}"
    return seal_request(log_request(reader, TRIAGE_ACTION, "alert", body, attributes))


def finding_json(finding: Finding) -> dict[str, Any]:
    """A finding as JSON (``otaudit detect --format json``, webhook bodies)."""
    return {
        "id": finding.alert_id,
        "time": rfc3339_ns(finding.time_ns),
        "rule": finding.rule.name,
        "severity": finding.rule.severity,
        "kind": finding.rule.kind,
        "summary": finding.summary,
        "group": finding.group,
        "count": finding.count,
        "trigger_seq": finding.trigger_seq,
        "evidence_seqs": list(finding.evidence),
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

    @property
    def evidence(self) -> tuple[int, ...]:
        """The sequence numbers of the records that make the alert."""
        text = self.details.get("audit.alert.evidence_seqs", "")
        return tuple(int(s) for s in text.split(",") if s.isdigit())

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
        }  # fmt: skip


def _json_or_text(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _attributes(value: Any) -> dict[str, str]:
    return value if isinstance(value, dict) else orjson.loads(value or "{}")


def read_alerts(store: Store, *, since_ns: int | None = None) -> list[AlertView]:
    """Every alert in the ledger (from ``since_ns``), oldest first, with its triage."""
    alerts: dict[str, AlertView] = {}
    triage: list[tuple[str, Triage]] = []
    for seq, time_ns, actor, target, raw in store.action_rows(
        (ALERT_ACTION, TRIAGE_ACTION), since_ns=None
    ):
        attrs = _attributes(raw)
        alert_id = attrs.get("audit.alert.id") or target or ""
        if attrs.get("audit.action") == ALERT_ACTION:
            if since_ns is not None and time_ns < since_ns:
                continue
            details = {k: v for k, v in attrs.items() if k.startswith("audit.alert.")}
            alerts.setdefault(alert_id, AlertView(
                alert_id, int(seq), rfc3339_ns(int(time_ns)), attrs.get("audit.alert.rule", ""),
                attrs.get("audit.alert.severity", ""), attrs.get("audit.alert.summary", ""),
                details,
            ))  # fmt: skip
        else:
            triage.append((alert_id, Triage(int(seq), rfc3339_ns(int(time_ns)), actor or "",
                                            attrs.get("audit.alert.decision", ""),
                                            attrs.get("audit.alert.note", ""))))  # fmt: skip
    for alert_id, decision in triage:
        if alert_id in alerts:
            alerts[alert_id].triage.append(decision)
    return list(alerts.values())


def find_alert(store: Store, alert_id: str) -> AlertView:
    """The alert with this id, or with this unique id prefix (at least 6 characters).

    ConfigError when there is none or the prefix is ambiguous.
    """
    alerts = read_alerts(store)
    for alert in alerts:
        if alert.alert_id == alert_id:
            return alert
    matches = [a for a in alerts if len(alert_id) >= 6 and a.alert_id.startswith(alert_id)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"alert id prefix {alert_id!r} is ambiguous ({len(matches)} alerts)")
    raise ConfigError(f"no alert {alert_id!r} in the ledger (`otaudit alerts` lists them)")


def new_alerts(findings: Iterable[Finding], seqs: Iterable[int | None]) -> Iterator[Finding]:
    """The findings whose alert record was appended just now (not already in the ledger)."""
    for finding, seq in zip(findings, seqs, strict=True):
        if seq is not None:
            yield finding


def log_alert(alert: dict[str, Any], seq: int) -> None:
    """One log line per new alert (the ``otaudit.alerts`` logger); ``alert`` as
    :func:`finding_json` gives it."""
    evidence = ",".join(map(str, alert["evidence_seqs"][:10]))
    log.warning("ALERT %s [%s] %s: %s (ledger seq %d, evidence seqs %s)", alert["id"],
                alert["severity"], alert["rule"], alert["summary"], seq, evidence)  # fmt: skip
