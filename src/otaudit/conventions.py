"""Audit attribute conventions: which attributes fill a record's audit fields.

otaudit accepts both the names used by older instrumentation and the seed
article (``enduser.id``, ``enduser.role``, ``enduser.ip``) and the current
OpenTelemetry semantic conventions (``user.id``, ``user.roles``,
``client.address``), plus the ``audit.*`` namespace. Each audit field takes
the first attribute of its list that is present on the record; the raw
attributes are always kept as sent. ``docs/conventions.md`` documents the
table.

Conformance: ``action`` selects a record; ``actor`` and ``result`` are
required too, ``target``, ``resource_type`` and ``client_address``
recommended. A record missing a required field is still sealed; its
``missing`` column names the absent fields. Completeness: each producer (one
process of an instrumented application) numbers its audit records with
``audit.producer.id`` and ``audit.producer.seq`` (1, 2, 3 ..., shared by its
spans and logs), so ``otaudit gaps`` can find records that never arrived.
"""

from __future__ import annotations

from typing import Final

#: Field name -> attribute keys in order of preference.
FIELD_SOURCES: Final[dict[str, tuple[str, ...]]] = {
    "actor": ("enduser.id", "user.id", "audit.changed_by"),
    "actor_role": ("enduser.role", "user.roles"),
    "client_address": ("client.address", "enduser.ip"),
    "action": ("audit.action",),
    "target": ("audit.target_user", "audit.target"),
    "resource_type": ("audit.resource_type",),
    "result": ("audit.result",),
}

#: The attribute whose presence makes a record audit-relevant (the default policy).
AUDIT_ATTRIBUTE: Final = "audit.action"

#: Resource attribute naming the emitting service.
SERVICE_ATTRIBUTE: Final = "service.name"

#: OTLP span status codes mapped to a result when ``audit.result`` is absent.
STATUS_RESULT: Final[dict[int, str]] = {1: "success", 2: "failure"}

#: Audit fields a conforming record has besides ``action`` (which selects it), in the
#: order the ``missing`` column lists the absent ones.
REQUIRED_FIELDS: Final = ("actor", "result")

#: Audit fields a record should have; their absence does not make it non-conforming.
RECOMMENDED_FIELDS: Final = ("target", "resource_type", "client_address")

#: Record attribute identifying the producer (one process of an instrumented app), a string.
PRODUCER_ID_ATTRIBUTE: Final = "audit.producer.id"

#: Record attribute numbering a producer's audit records 1, 2, 3 ... (an int), never reused.
PRODUCER_SEQ_ATTRIBUTE: Final = "audit.producer.seq"

#: The pipeline of otaudit's own records (reads, token changes, alerts, triage); the
#: receivers refuse it from clients, so no client can pose as otaudit.
OWN_PIPELINE: Final = "otaudit"
