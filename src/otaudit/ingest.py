"""Transport-independent ingest: select, stamp, seal, hand to the sequencer.

Both receivers (HTTP and gRPC) call :meth:`Ingest.accept` with a decoded
export request and the time the request arrived, then wait on the returned
future: it resolves only after every selected record is committed.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from otaudit.errors import DecodeError
from otaudit.ledger import Sequencer
from otaudit.metrics import Metrics
from otaudit.otlp.convert import Selection, count_data_points, select_logs, select_spans
from otaudit.record import seal

PIPELINE_HEADER: Final = "x-audit-pipeline"
_PIPELINE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
_SIGNALS: Final = {"traces": ("span", select_spans), "logs": ("log", select_logs)}


@dataclass(frozen=True)
class IngestSettings:
    """Ingest policy and limits (see ``otaudit serve --help``)."""

    audit_attribute: str = "audit.action"
    default_pipeline: str = "otlp"
    max_body_bytes: int = 16 * 1024 * 1024


class Ingest:
    """Turns decoded OTLP export requests into committed ledger entries."""

    def __init__(self, sequencer: Sequencer, metrics: Metrics, settings: IngestSettings) -> None:
        self.sequencer = sequencer
        self.metrics = metrics
        self.settings = settings

    def pipeline(self, header: str | None) -> str:
        """The pipeline name for a request: its ``X-Audit-Pipeline`` header or the default."""
        if header is None:
            return self.settings.default_pipeline
        if not _PIPELINE_RE.fullmatch(header):
            raise DecodeError(
                f"{PIPELINE_HEADER} must be 1-64 letters, digits or ._/- characters, got {header!r}"
            )
        return header

    def accept(
        self, kind: str, request: Any, pipeline: str, received_ns: int
    ) -> tuple[Selection, Future[list[int | None]]]:
        """Select and seal the audit records of a traces or logs request and queue them.

        Raises ``DecodeError`` for invalid ids and ``Overloaded`` when the
        sequencer queue is full; nothing is queued in either case.
        """
        signal, select = _SIGNALS[kind]
        sel = select(request, self.settings.audit_attribute)
        self.metrics.received.labels(signal).inc(sel.received)
        if sel.dropped:
            self.metrics.dropped.labels(signal, "not_audit").inc(sel.dropped)
        if sel.rejected:
            self.metrics.rejected.labels(signal).inc(sel.rejected)
        entries = [seal(obj, content, pipeline, received_ns) for obj, content in sel.records]
        return sel, self.sequencer.submit(entries)

    def refuse_metrics(self, request: Any) -> tuple[int, str]:
        """otaudit keeps no metrics: count the data points and say so in ``partial_success``."""
        points = count_data_points(request)
        self.metrics.dropped.labels("metric", "metrics_not_kept").inc(points)
        return points, "otaudit keeps audit spans and log records only; metrics are not stored"
