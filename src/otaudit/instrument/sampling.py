"""A sampler that never drops an audit span (needs the OpenTelemetry SDK).

An audit span the sampler drops is a lost audit record: it still claimed its
``audit.producer.seq``, so an auditor sees the gap, but the record is gone.
The SDK's default, ``ParentBased(ALWAYS_ON)``, drops every span whose remote
parent says "not sampled", which any caller can send in ``traceparent``. Use::

    TracerProvider(sampler=AuditSampler())           # or AuditSampler(your_sampler)

Not imported by ``otaudit.instrument`` itself, which needs only the API.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otaudit.instrument.attributes import AUDIT_ACTION

__all__ = ["AuditSampler"]


class AuditSampler(Sampler):
    """Record and sample every span started with ``audit.action``; ask ``delegate``
    (default ``ParentBased(ALWAYS_ON)``) about the others.

    :func:`~otaudit.instrument.audit_span` passes its attributes at span start,
    so this sampler sees them.
    """

    def __init__(self, delegate: Sampler | None = None) -> None:
        self._delegate = delegate if delegate is not None else ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Sample audit spans always; delegate the rest."""
        chosen = ALWAYS_ON if attributes and AUDIT_ACTION in attributes else self._delegate
        return chosen.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """``AuditSampler{<delegate's description>}``."""
        return f"AuditSampler{{{self._delegate.get_description()}}}"
