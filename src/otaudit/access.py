"""Reading the audit trail is itself on the audit trail (DESIGN invariant 8).

Every query, search, export, proof, sample and report that otaudit runs for
someone appends a record of its own, before any result leaves otaudit: an
OTLP log record from the service ``otaudit`` with

- ``audit.action`` = ``audit_log.query``, ``audit.resource_type`` = ``audit_log``;
- ``enduser.id``: who read (the authenticated reader of the read API, or the
  operating-system user running the CLI), ``client.address`` where known;
- ``audit.query.kind`` (``sql``, ``search``, ``export``, ``prove``, ``sample``,
  ``report``) and ``audit.query.text`` (the statement, or the command's
  parameters in a stable form);
- ``audit.result`` = ``success`` or ``failure``, with ``audit.query.rows``
  or ``audit.query.error``.

It is sealed like any other record (pipeline ``otaudit``), so the record of
who looked at the trail is as tamper-evident as the trail.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit.conventions import AUDIT_ATTRIBUTE
from otaudit.errors import OtauditError
from otaudit.otlp.convert import select_logs
from otaudit.record import Entry, seal
from otaudit.store.base import Store

READ_ACTION: Final = "audit_log.query"
PIPELINE: Final = "otaudit"
MAX_TEXT: Final = 8192

log = logging.getLogger("otaudit.access")


@dataclass(frozen=True, slots=True)
class Reader:
    """Who is reading: an actor name and, when known, the client's address."""

    actor: str
    client_address: str | None = None


def os_reader() -> Reader:
    """The operating-system user running this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}"
    return Reader(user)


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


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
    now = time.time_ns()
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        [_kv("service.name", "otaudit"), _kv("host.name", socket.gethostname())]
    )
    record = resource_logs.scope_logs.add().log_records.add()
    record.time_unix_nano = now
    record.observed_time_unix_nano = now
    record.event_name = READ_ACTION
    record.body.string_value = f"{reader.actor} ran {kind}"
    attributes = [
        _kv(AUDIT_ATTRIBUTE, READ_ACTION),
        _kv("audit.resource_type", "audit_log"),
        _kv("enduser.id", reader.actor),
        _kv("audit.query.kind", kind),
        _kv("audit.query.text", text[:MAX_TEXT]),
        _kv("audit.result", "success" if ok else "failure"),
    ]
    if reader.client_address:
        attributes.append(_kv("client.address", reader.client_address))
    if rows is not None:
        attributes.append(_kv("audit.query.rows", rows))
    if error is not None:
        attributes.append(_kv("audit.query.error", error[:MAX_TEXT]))
    record.attributes.extend(attributes)
    ((obj, content),) = select_logs(request, AUDIT_ATTRIBUTE).records
    return seal(obj, content, PIPELINE, now)


def append_read(store: Store, entry: Entry) -> int:
    """Append one read record durably; its sequence number."""
    (seq,) = store.append([entry]).seqs
    assert seq is not None  # a fresh receive time makes every read record new
    return seq


def not_recorded_warning(reason: OtauditError) -> str:
    """The stderr line for a read that could not be recorded (a read-only copy, a reader login)."""
    return f"otaudit: warning: this read is not recorded in the ledger: {reason}"
