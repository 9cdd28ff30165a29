"""What an evidence pack found, as plain data: the input of its report and its ``pack.json``.

The builder (:mod:`otaudit.evidence.pack`) streams every population to its files and keeps
only these figures; the renderers (:mod:`otaudit.evidence.report`) draw the report from
them alone, so that a report never needs the ledger or a population in memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CheckpointInfo:
    """A signed checkpoint the pack was built against."""

    tree_size: int
    root_hash: str  # hex
    signed_at: str  # RFC 3339 UTC
    file: str  # its note, relative to the pack


@dataclass
class AlertRow:
    """One alert raised in the period, with its triage as it stood at the period's end."""

    alert_id: str
    seq: int
    raised_at: str
    rule: str
    severity: str
    summary: str
    evidence_seqs: list[int]
    #: ``open``, or the latest decision taken before the period's end.
    state: str
    decided_by: str | None
    decided_at: str | None
    note: str | None
    #: Seconds from the alert to its first decision, or None if none by the period's end.
    time_to_triage_s: float | None


@dataclass
class TriageStats:
    """How fast alerts were triaged in the period."""

    alerts: int
    triaged: int
    open_at_end: int
    median_s: float | None
    p90_s: float | None


@dataclass
class ControlSummary:
    """One control's population and sample, in figures."""

    control: str  # e.g. CC6.1
    title: str
    description: str
    #: The statement that selects the population (``otaudit sql`` dialect) and its parameters.
    sql: str
    parameters: dict[str, Any]
    rows: int
    #: Records whose result is a failure (failure, denied, error ...).
    failures: int
    #: Records per UTC day (``YYYY-MM-DD``), every day of the period, zeros included.
    per_day: dict[str, int]
    by_action: dict[str, int]
    by_result: dict[str, int]
    sample_size: int
    #: Why that size: ``--sample-size``, or the frequency the population shows.
    sample_basis: str
    sample_seqs: list[int]
    #: Alerts of the period, for the monitoring controls (CC7.2, CC7.3); else empty.
    alerts: list[AlertRow] = field(default_factory=list)
    triage: TriageStats | None = None


@dataclass
class ProducerGap:
    """A producer active in the period, with the numbers missing from its sequence."""

    producer: str
    records: int
    missing_count: int
    missing: str
    duplicate_count: int


@dataclass
class Completeness:
    """The IPE evidence: the period is exactly what the signed tree holds."""

    opening: CheckpointInfo
    closing: CheckpointInfo
    #: Records of the period (by their time) in the closing checkpoint's tree.
    records: int
    per_day: dict[str, int]
    producers: list[ProducerGap]
    #: Alerts of detection's silence rules raised in the period.
    silences: int
    #: Records of the period without a required field (actor, result).
    nonconforming: int
    #: Records dated in the period that reached the ledger after the closing checkpoint.
    late: int
    #: Records of the period removed by retention or erasure before the pack was built.
    removed: int


@dataclass
class TokenInfo:
    """An API token as configured (never the secret)."""

    token_id: str
    name: str
    scopes: str
    created_at: str
    revoked_at: str | None


@dataclass
class Configuration:
    """The configuration that makes the controls work."""

    retention_policy_sha256: str | None
    retention_policy_text: str | None
    receipts: int
    holds: int
    tokens: list[TokenInfo]
    #: (name, kind, severity, description) of each detection rule in force.
    rules: list[tuple[str, str, str, str]]
    verifier_key: str


@dataclass
class PackSummary:
    """Everything the report shows."""

    origin: str
    period_from: str  # RFC 3339 UTC, inclusive
    period_to: str  # RFC 3339 UTC, exclusive
    built_at: str
    built_by: str
    store: str  # "sqlite" or "postgresql"
    days: list[str]  # every UTC day of the period, in order
    controls: list[ControlSummary]
    completeness: Completeness
    configuration: Configuration
    #: Files of the pack, relative paths, as the manifest lists them (set last).
    files: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The summary as JSON (``pack.json``)."""
        return asdict(self)
