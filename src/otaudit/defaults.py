"""The defaults of ``otaudit serve``: one table, each default with its unit in its name.

The library reads its defaults from here (:class:`otaudit.ingest.IngestSettings`,
:class:`otaudit.otlp.convert.Limits`, :class:`otaudit.receiver.connections.ConnectionLimits`,
:class:`otaudit.ledger.Sequencer`, :class:`otaudit.server.ServeSettings`, the alert grouping
of :mod:`otaudit.detect`), and so do the options of ``otaudit serve``. :data:`SERVE` lists
them by option with a one-line description; ``docs/operations.md`` states the same values,
and a test holds the three together.

Units: ``_BYTES`` bytes, ``_S`` seconds; a count has no suffix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from otaudit.conventions import AUDIT_ATTRIBUTE as _AUDIT_ATTRIBUTE

__all__ = [
    "ALERT_GROUP_WINDOW_S",
    "AUDIT_ATTRIBUTE",
    "BODY_TIMEOUT_S",
    "CHECKPOINT_INTERVAL_S",
    "DATA_DIR",
    "GRPC_ADDRESS",
    "HEADER_TIMEOUT_S",
    "HTTP_ADDRESS",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_BYTES",
    "MAX_BODY_BYTES",
    "MAX_BODY_BYTES_CEILING",
    "MAX_CALLS_PER_PEER",
    "MAX_CONNECTIONS",
    "MAX_QUEUE_RECORDS",
    "MAX_RECORDS_PER_REQUEST",
    "MAX_RESOURCE_BYTES",
    "PIPELINE",
    "SERVE",
    "SHUTDOWN_TIMEOUT_S",
    "WORKERS",
    "Setting",
]

DATA_DIR: Final = Path("otaudit-data")
"""The data directory: the SQLite ledger, the signing key and its saved checkpoint."""
HTTP_ADDRESS: Final = "127.0.0.1:4318"
"""Where OTLP/HTTP (and ``/metrics``, ``/healthz``) listens, ``HOST:PORT``."""
GRPC_ADDRESS: Final = "127.0.0.1:4317"
"""Where OTLP/gRPC listens, ``HOST:PORT``."""
AUDIT_ATTRIBUTE: Final = _AUDIT_ATTRIBUTE
"""Records carrying this attribute are sealed; the rest are counted and dropped."""
PIPELINE: Final = "otlp"
"""The pipeline stamped on records whose request has no ``X-Audit-Pipeline`` header."""
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: The largest ``--max-body-bytes``: a request is held in memory, and one gRPC message
#: carries at most 2 GiB - 1.
MAX_BODY_BYTES_CEILING: Final = 2**31 - 1
"""The most one request may hold, measured after decompression."""
HEADER_TIMEOUT_S: Final = 10.0
"""Seconds a client has to send a request's headers (gRPC: to connect)."""
BODY_TIMEOUT_S: Final = 30.0
"""Seconds a client has to send a request's body once its headers are in."""
MAX_CONNECTIONS: Final = 1000
"""Open connections per listener; more are refused."""
MAX_CALLS_PER_PEER: Final = 16
"""gRPC calls one client address may have open at once (above an OpenTelemetry Collector's
10 concurrent exports)."""
SHUTDOWN_TIMEOUT_S: Final = 10.0
"""Seconds requests in flight get after SIGTERM before their connections close."""
MAX_QUEUE_RECORDS: Final = 200_000
"""Records waiting for the sequencer before ingest answers 503."""
CHECKPOINT_INTERVAL_S: Final = 1.0
"""Seconds between signed checkpoints while records arrive."""
WORKERS: Final = min(os.cpu_count() or 1, 4)
"""Processes that decompress, decode and seal requests: the cores, at most 4."""
MAX_ATTRIBUTES: Final = 256
"""Attributes one record may carry."""
MAX_ATTRIBUTE_BYTES: Final = 64 * 1024
"""Encoded size one attribute value may have."""
MAX_RESOURCE_BYTES: Final = 64 * 1024
"""Encoded size a record's resource, or its scope, may have."""
MAX_RECORDS_PER_REQUEST: Final = 20_000
"""Spans or log records one export may hold (at most ``MAX_QUEUE_RECORDS``)."""
ALERT_GROUP_WINDOW_S: Final = 600
"""Findings of one rule and group within this many seconds make one alert."""


@dataclass(frozen=True)
class Setting:
    """One option of ``otaudit serve`` and its default."""

    option: str
    """The command-line option, ``--max-body-bytes``."""
    default: object
    """The default value, in the option's unit."""
    description: str
    """What it sets, in one line."""
    shown: str | None = None
    """How ``--help`` and the documentation state a default that depends on the machine or
    on another option; None when they state :attr:`default` itself."""


SERVE: Final[tuple[Setting, ...]] = (
    Setting("--data", DATA_DIR, "data directory"),
    Setting("--http", HTTP_ADDRESS, "OTLP/HTTP listen address"),
    Setting("--grpc", GRPC_ADDRESS, "OTLP/gRPC listen address"),
    Setting("--audit-attribute", AUDIT_ATTRIBUTE, "records carrying it are sealed"),
    Setting("--pipeline", PIPELINE, "pipeline of requests without X-Audit-Pipeline"),
    Setting("--max-body-bytes", MAX_BODY_BYTES, "request size, after decompression"),
    Setting("--header-timeout", HEADER_TIMEOUT_S, "seconds to send a request's headers"),
    Setting("--body-timeout", BODY_TIMEOUT_S, "seconds to send a request's body"),
    Setting("--max-connections", MAX_CONNECTIONS, "open connections per listener"),
    Setting("--max-calls-per-peer", MAX_CALLS_PER_PEER, "open gRPC calls per client address"),
    Setting("--shutdown-timeout", SHUTDOWN_TIMEOUT_S, "seconds in-flight requests get on stop"),
    Setting("--max-attributes", MAX_ATTRIBUTES, "attributes per record"),
    Setting("--max-attribute-bytes", MAX_ATTRIBUTE_BYTES, "encoded size of an attribute value"),
    Setting("--max-resource-bytes", MAX_RESOURCE_BYTES, "encoded size of a resource or scope"),
    Setting(
        "--max-records-per-request",
        MAX_RECORDS_PER_REQUEST,
        "records per export",
        shown=f"{MAX_RECORDS_PER_REQUEST}, or --max-queue-records if smaller",
    ),
    Setting("--max-queue-records", MAX_QUEUE_RECORDS, "records waiting for the sequencer"),
    Setting("--workers", WORKERS, "ingest processes", shown="cores, at most 4"),
    Setting("--checkpoint-interval", CHECKPOINT_INTERVAL_S, "seconds between checkpoints"),
    Setting(
        "--alert-group-window", ALERT_GROUP_WINDOW_S, "seconds of one alert group", shown="10m"
    ),
)
"""Every option of ``otaudit serve`` that has a default, with it."""
