"""Records sealed in process, the way ``serve`` seals them, for tests that fill a store
directly: many small audit spans, or spans that share one large resource."""

from __future__ import annotations

import hashlib
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otaudit import tree
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.ingest import IngestSettings, prepare
from otaudit.keys import SigningKey
from otaudit.otlp.convert import Limits, select_spans
from otaudit.record import Entry, seal
from otaudit.store.base import Store, StoredCheckpoint
from support import audit_request

SPANS = 100
RESOURCE_BYTES = 60 * 1024
_next = iter(range(1, 1 << 40))


def entries(n: int) -> list[Entry]:
    """``n`` distinct sealed audit spans."""
    export = ExportTraceServiceRequest.FromString(audit_request(n, payload_bytes=20))
    return [
        seal(obj, content, "otlp", 7)
        for obj, content in select_spans(export, "audit.action").records
    ]


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def blob(tag: str) -> str:
    """``RESOURCE_BYTES`` of hex that no store compresses, different for each ``tag``."""
    digits = hashlib.shake_256(tag.encode()).hexdigest(RESOURCE_BYTES // 2)
    assert len(digits) == RESOURCE_BYTES
    return digits


def big_request(tag: str, spans: int = SPANS) -> bytes:
    """One request: a resource of ``RESOURCE_BYTES`` (named by ``tag``), ``spans`` tiny
    audit spans."""
    resource = Resource(attributes=[_kv("service.name", f"svc-{tag}"), _kv("host.blob", blob(tag))])
    items = []
    for _ in range(spans):
        n = next(_next)
        items.append(
            Span(
                trace_id=n.to_bytes(16, "big"),
                span_id=n.to_bytes(8, "big"),
                name="login",
                start_time_unix_nano=1_764_288_000_000_000_000 + n,
                attributes=[_kv("audit.action", "login"), _kv("user.id", "alice")],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=items)])]
    )
    return request.SerializeToString()


def sealed_entries(body: bytes) -> list[Entry]:
    """The entries ``serve`` would seal for ``body``, with no per-request sealed budget."""
    settings = IngestSettings(limits=Limits(min_sealed_budget=1 << 30))
    prepared = prepare("traces", "application/x-protobuf", body, False, "otlp",
                       time.time_ns(), settings)  # fmt: skip
    return prepared.entries


def sign(store: Store, key: SigningKey, origin: str) -> StoredCheckpoint:
    """Sign the store's whole tree with ``key`` and store the checkpoint."""
    size = store.tree_size()
    root = tree.stored_root(store, size)
    note = sign_checkpoint(Checkpoint(origin, size, root), key)
    checkpoint = StoredCheckpoint(size, root, time.time_ns(), note)
    store.add_checkpoint(checkpoint)
    return checkpoint
