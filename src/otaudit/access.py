"""Reading the audit trail is itself on the audit trail (DESIGN invariant 8).

Every query, search, export, proof, sample and report that otaudit runs for
someone appends a record of its own, before any result leaves otaudit: an
OTLP log record from the service ``otaudit`` with

- ``audit.action`` = ``audit_log.query``, ``audit.resource_type`` = ``audit_log``;
- ``enduser.id``: who read (the authenticated reader of the read API, or the
  operating-system user running the CLI), ``client.address`` where known;
- ``audit.query.kind`` (``sql``, ``search``, ``export``, ``backup``, ``prove``,
  ``sample``, ``report``) and ``audit.query.text`` (the statement, or the command's
  parameters in a stable form);
- ``audit.result`` = ``success`` or ``failure``, with ``audit.query.rows``
  or ``audit.query.error``.

It is sealed like any other record (pipeline ``otaudit``), so the record of
who looked at the trail is as tamper-evident as the trail. It reaches the ledger
through :func:`otaudit.ownrecords.record_read`, with otaudit's other records of its own.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import time
from dataclasses import dataclass
from typing import Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit.conventions import AUDIT_ATTRIBUTE, OWN_PIPELINE
from otaudit.errors import OtauditError
from otaudit.otlp.convert import select_logs
from otaudit.record import Entry, seal

READ_ACTION: Final = "audit_log.query"
PIPELINE: Final = OWN_PIPELINE
MAX_TEXT: Final = 8192

log = logging.getLogger("otaudit.access")


@dataclass(frozen=True, slots=True)
class Reader:
    """Who is reading: an actor name and, when known, the client's address."""

    actor: str
    client_address: str | None = None
    token_id: str | None = None


def os_reader() -> Reader:
    """The operating-system user running this process, by its real user id (not ``USER``
    or ``LOGNAME``, which anyone can set)."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = f"uid:{os.getuid()}"
    return Reader(user)


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def log_request(
    reader: Reader,
    action: str,
    resource_type: str,
    body: str,
    attributes: dict[str, str | int],
    *,
    time_ns: int | None = None,
    severity: tuple[int, str] | None = None,
    host: bool = True,
) -> ExportLogsServiceRequest:
    """An OTLP log record of the service ``otaudit`` about ``action`` by ``reader``.

    ``time_ns`` defaults to now; ``host`` adds ``host.name`` to the resource (records that
    must come out byte-identical on every node, such as alerts, leave it out).
    """
    now = time.time_ns() if time_ns is None else time_ns
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(_kv("service.name", "otaudit"))
    if host:
        resource_logs.resource.attributes.append(_kv("host.name", socket.gethostname()))
    record = resource_logs.scope_logs.add().log_records.add()
    record.time_unix_nano = now
    record.observed_time_unix_nano = now
    record.event_name = action
    record.body.string_value = body
    if severity is not None:
        record.severity_number, record.severity_text = severity  # type: ignore[assignment]
    fields: dict[str, str | int] = {
        AUDIT_ATTRIBUTE: action,
        "audit.resource_type": resource_type,
        "enduser.id": reader.actor,
    }
    if reader.client_address:
        fields["client.address"] = reader.client_address
    if reader.token_id:
        fields["audit.token.id"] = reader.token_id
    fields |= attributes
    record.attributes.extend(_kv(k, v) for k, v in fields.items())
    return request


def seal_request(request: ExportLogsServiceRequest) -> Entry:
    """Seal the one log record of ``request`` (from :func:`log_request`), pipeline ``otaudit``."""
    ((obj, content),) = select_logs(request, AUDIT_ATTRIBUTE).records
    return seal(obj, content, PIPELINE, time.time_ns())


def _log_entry(
    reader: Reader, action: str, resource_type: str, body: str, attributes: dict[str, str | int]
) -> Entry:
    """A sealed log record of the service ``otaudit`` (pipeline ``otaudit``), now."""
    return seal_request(log_request(reader, action, resource_type, body, attributes))


def read_entry(
    reader: Reader,
    kind: str,
    text: str,
    *,
    ok: bool,
    rows: int | None = None,
    error: str | None = None,
) -> Entry:
    """The sealed record of one read (see the module docstring for its fields)."""
    attributes: dict[str, str | int] = {
        "audit.query.kind": kind,
        "audit.query.text": text[:MAX_TEXT],
        "audit.result": "success" if ok else "failure",
    }
    if rows is not None:
        attributes["audit.query.rows"] = rows
    if error is not None:
        attributes["audit.query.error"] = error[:MAX_TEXT]
    return _log_entry(reader, READ_ACTION, "audit_log", f"{reader.actor} ran {kind}", attributes)


def not_recorded_warning(reason: OtauditError) -> str:
    """The stderr line for a read that could not be recorded (a read-only copy, a reader login)."""
    return f"otaudit: warning: this read is not recorded in the ledger: {reason}"
