"""Helpers that make an application's audit records complete and consistent.

Importable with only the OpenTelemetry API (``AuditSampler`` in
``otaudit.instrument.sampling`` needs the SDK); no otaudit server dependency.

- :func:`actor` / :func:`current_actor`: the ambient actor (never read from
  baggage, which any caller can send).
- :func:`audit_span` / :func:`audited`: an audit span around a block or a
  function, with the result (``success``/``failure``) filled in.
- :func:`audit_log`: an audit log record straight through the logs API.
- :class:`AuditContextMiddleware` (ASGI) / :class:`AuditContextWSGIMiddleware`:
  set the actor per request from the application's authentication (baggage
  only from ``trust_baggage_from``, ``X-Forwarded-For`` only past
  ``trusted_proxies``) and propagate it in baggage.
- :func:`configure` / :func:`producer_id`: completeness numbering
  (``audit.producer.id``, ``audit.producer.seq``).

``docs/instrumenting.md`` is the guide.
"""

from otaudit.instrument import attributes
from otaudit.instrument.context import Actor, actor, current_actor
from otaudit.instrument.logs import audit_log
from otaudit.instrument.meta import ConfigError
from otaudit.instrument.middleware import AuditContextMiddleware, AuditContextWSGIMiddleware
from otaudit.instrument.producer import configure, next_number, producer_id
from otaudit.instrument.record import audit_attributes, to_attribute_value
from otaudit.instrument.spans import audit_span, audited, error_type

__all__ = [
    "Actor",
    "AuditContextMiddleware",
    "AuditContextWSGIMiddleware",
    "ConfigError",
    "actor",
    "attributes",
    "audit_attributes",
    "audit_log",
    "audit_span",
    "audited",
    "configure",
    "current_actor",
    "error_type",
    "next_number",
    "producer_id",
    "to_attribute_value",
]
