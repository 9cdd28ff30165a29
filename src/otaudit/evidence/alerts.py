"""The monitoring controls' alerts: every alert raised in the period, with its triage as it
stood when the period ended, and how long alerts waited for a decision."""

from __future__ import annotations

import statistics
from typing import Any, Final

from otaudit.detect.alerts import OPEN_DECISIONS, AlertView, read_alerts
from otaudit.evidence.files import PackWriter, TableFiles
from otaudit.evidence.model import AlertRow, TriageStats
from otaudit.record import rfc3339_to_ns
from otaudit.store.base import Store

ALERT_COLUMNS: Final = (
    "alert_id", "seq", "raised_at", "rule", "severity", "summary", "evidence_seqs", "state",
    "decided_by", "decided_at", "note", "time_to_triage_s",
)  # fmt: skip


def period_alerts(store: Store, from_ns: int, to_ns: int, end: int) -> list[AlertRow]:
    """The alerts raised in ``[from_ns, to_ns)`` within the first ``end`` records, each with
    the triage decisions taken before ``to_ns`` (and within ``end``)."""
    rows = []
    for alert in read_alerts(store, since_ns=from_ns):
        raised = rfc3339_to_ns(alert.time)
        if raised >= to_ns or alert.seq >= end:
            continue
        rows.append(_row(alert, raised, to_ns, end))
    return rows


def _row(alert: AlertView, raised: int, to_ns: int, end: int) -> AlertRow:
    decisions = [t for t in alert.triage if t.seq < end and rfc3339_to_ns(t.time) < to_ns]
    first = decisions[0] if decisions else None
    last = decisions[-1] if decisions else None
    return AlertRow(
        alert_id=alert.alert_id,
        seq=alert.seq,
        raised_at=alert.time,
        rule=alert.rule,
        severity=alert.severity,
        summary=alert.summary,
        evidence_seqs=list(alert.evidence),
        state=last.decision if last else "open",
        decided_by=last.actor if last else None,
        decided_at=last.time if last else None,
        note=last.note if last else None,
        time_to_triage_s=(rfc3339_to_ns(first.time) - raised) / 1e9 if first else None,
    )


def is_open(row: AlertRow) -> bool:
    """Whether the alert still needed work when the period ended."""
    return row.state == "open" or row.state in OPEN_DECISIONS


def triage_stats(rows: list[AlertRow]) -> TriageStats:
    """Alerts, how many were triaged, how many were open at the end, and time to triage."""
    waits = sorted(r.time_to_triage_s for r in rows if r.time_to_triage_s is not None)
    p90 = None
    if waits:
        # The nearest-rank 90th percentile: a value that was observed.
        p90 = waits[max(0, -(-9 * len(waits) // 10) - 1)]
    return TriageStats(
        alerts=len(rows),
        triaged=len(waits),
        open_at_end=sum(1 for r in rows if is_open(r)),
        median_s=statistics.median(waits) if waits else None,
        p90_s=p90,
    )


def write_alerts(writer: PackWriter, folder: str, rows: list[AlertRow]) -> None:
    """``alerts.csv`` and ``alerts.jsonl``: every alert of the period with its triage."""
    files = TableFiles(writer, f"{folder}/alerts", ALERT_COLUMNS)
    for r in rows:
        values: dict[str, Any] = vars(r) | {"evidence_seqs": ",".join(map(str, r.evidence_seqs))}
        files.add([values[c] for c in ALERT_COLUMNS])
    files.close()
