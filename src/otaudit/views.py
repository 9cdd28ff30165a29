"""What user SQL can read: the three audit views and their columns, each with its meaning.

One table for ``otaudit sql --schema``, the read API's ``GET /api/v1/schema`` and
``docs/querying.md`` (a test holds the three and both stores' real views together),
since SQL that lists tables (``sqlite_master``, ``PRAGMA``, ``information_schema``) is
refused to readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Column:
    """One column of the audit views: its types on each store and what it holds."""

    name: str
    sqlite: str
    postgres: str
    meaning: str


#: The views, by name, with what each holds.
VIEWS: Final = {
    "audit_records": "every audit record",
    "audit_spans": "the audit records that came from spans",
    "audit_logs": "the audit records that came from log records",
}

_TEXT: Final = ("text", "text")

#: The columns every view has, in their order.
COLUMNS: Final = tuple(
    Column(name, sqlite, postgres, meaning)
    for name, (sqlite, postgres), meaning in (
        ("seq", ("integer", "bigint"),
         "sequence number = leaf index in the Merkle tree, dense from 0"),
        ("timestamp", ("text", "timestamptz"),
         "when it happened (RFC 3339 UTC on SQLite; time_unix_nano keeps the nanoseconds)"),
        ("signal", _TEXT, "span or log"),
        ("trace_id", _TEXT, "trace id, lowercase hex (empty when absent)"),
        ("span_id", _TEXT, "span id, lowercase hex (empty when absent)"),
        ("name", _TEXT, "span name, or log event name / string body"),
        ("service", _TEXT, "resource service.name"),
        ("actor", _TEXT, "who acted"),
        ("actor_role", _TEXT, "in what role"),
        ("client_address", _TEXT, "from where"),
        ("action", _TEXT, "what was done (audit.action)"),
        ("target", _TEXT, "to whom or what"),
        ("resource_type", _TEXT, "on what kind of resource"),
        ("result", _TEXT, "the outcome: success, failure, denied ..."),
        ("producer", _TEXT, "audit.producer.id: the process that numbered the record, or NULL"),
        ("producer_seq", ("integer", "bigint"),
         "audit.producer.seq: the record's number within its producer, or NULL"),
        ("missing", _TEXT, "required fields the record lacks (actor, result), NULL if none"),
        ("attributes", ("text", "hstore"),
         "every record attribute as text: attributes['key'] reads one"),
        ("resource", ("text", "hstore"),
         "every resource attribute as text: resource['key'] reads one"),
        ("received_at", _TEXT, "when otaudit received it, RFC 3339"),
        ("pipeline", _TEXT, "the pipeline stamped at receipt; otaudit for otaudit's own records"),
        ("time_unix_nano", ("integer", "bigint"), "timestamp as UTC nanoseconds (indexed)"),
    )
)  # fmt: skip
