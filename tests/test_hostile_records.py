"""Well-formed records chosen to hurt: they are refused on their own, never multiplied into
the ledger, and never fail another client's export (issue: hostile but well-formed traffic).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit import ingest
from otaudit.checkpointer import Checkpointer
from otaudit.errors import PayloadTooLarge, UnstorableRecords
from otaudit.keys import SigningKey
from otaudit.ledger import Sequencer
from otaudit.metrics import Metrics
from otaudit.otlp.body import PROTOBUF
from otaudit.otlp.convert import MAX_TIME_NS, Limits, count_records
from otaudit.otlp.wirecount import records_over
from otaudit.record import Entry
from otaudit.store.base import Store
from support import Server, audit_request, otaudit

_SETTINGS = ingest.IngestSettings(workers=0)


def _prepare(
    kind: str, body: bytes, settings: ingest.IngestSettings = _SETTINGS
) -> ingest.Prepared:
    return ingest.prepare(kind, PROTOBUF, body, False, "otlp", 1_764_288_000_000_000_000, settings)


def _spans(
    count: int, *, resource: dict[str, str] | None = None, times: dict[str, int] | None = None
) -> bytes:
    request = ExportTraceServiceRequest()
    group = request.resource_spans.add()
    for key, value in (resource or {}).items():
        group.resource.attributes.add(key=key, value=AnyValue(string_value=value))
    spans = group.scope_spans.add().spans
    for n in range(count):
        span = spans.add(trace_id=(n + 1).to_bytes(16, "big"), span_id=(n + 1).to_bytes(8, "big"),
                         name="x", **(times or {}))  # fmt: skip
        span.attributes.append(KeyValue(key="audit.action", value=AnyValue(string_value="x")))
    return request.SerializeToString()


# -- times past int64 ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["start_time_unix_nano", "end_time_unix_nano"])
def test_a_span_time_past_int64_is_rejected_alone(field: str) -> None:
    body = _spans(1, times={field: 2**64 - 1})
    body += _spans(1, times={"start_time_unix_nano": MAX_TIME_NS})
    prepared = _prepare("traces", body)
    assert (prepared.received, prepared.rejected, len(prepared.entries)) == (2, 1, 1)
    assert f"{field} 18446744073709551615 is after 2262-04-11" in prepared.message
    assert prepared.entries[0].columns.time_unix_nano == MAX_TIME_NS  # 2^63-1 is kept


def test_a_log_time_past_int64_is_rejected_alone() -> None:
    request = ExportLogsServiceRequest()
    logs = request.resource_logs.add().scope_logs.add().log_records
    for observed in (2**63, 5):
        rec = logs.add(observed_time_unix_nano=observed)
        rec.attributes.append(KeyValue(key="audit.action", value=AnyValue(string_value="x")))
    prepared = _prepare("logs", request.SerializeToString())
    assert (prepared.rejected, len(prepared.entries)) == (1, 1)
    assert "observed_time_unix_nano 9223372036854775808 is after" in prepared.message


def _sequencer(store: Store, tmp_path: Path) -> Sequencer:
    key = SigningKey.generate("hostile-test")
    return Sequencer(store, Checkpointer(store, key, key.name, saved_path=tmp_path / "cp"),
                     Metrics())  # fmt: skip


def test_records_the_store_cannot_hold_fail_only_their_own_request(
    any_store: Store, tmp_path: Path, store_url: str
) -> None:
    """A value the database refuses (past int64 on SQLite, NUL in text on PostgreSQL), if
    one ever passes the checks before sealing, fails its request with a non-retryable error
    and commits everyone else's records of the same group commit."""
    honest = _prepare("traces", audit_request(5)).entries
    first = _prepare("traces", audit_request(3)).entries
    bad = _prepare("traces", audit_request(1)).entries[0]
    poison = (
        bad.columns._replace(time_unix_nano=2**64 - 1)
        if store_url.startswith("sqlite")
        else bad.columns._replace(name="nul\x00name")
    )
    sequencer = _sequencer(any_store, tmp_path)
    # Queued before the writer starts, so the three requests go into one group commit.
    futures = [
        sequencer.submit(first),
        sequencer.submit([Entry(bad.sealed, bad.leaf, bad.dedup_key, poison)]),
        sequencer.submit(honest),
    ]
    sequencer.start()
    try:
        assert futures[0].result(timeout=30) == [0, 1, 2]
        with pytest.raises(UnstorableRecords, match="cannot store a value"):
            futures[1].result(timeout=30)
        assert futures[2].result(timeout=30) == [3, 4, 5, 6, 7]
    finally:
        sequencer.stop()
    assert any_store.tree_size() == 8


# -- records per request -----------------------------------------------------------------


def test_a_request_of_more_records_than_the_limit_is_refused_whole_not_retried() -> None:
    settings = dataclasses.replace(_SETTINGS, limits=Limits(max_records=1000))
    with pytest.raises(PayloadTooLarge, match="holds more than 1000 span records, over the limit"):
        _prepare("traces", _spans(1001), settings)
    assert len(_prepare("traces", _spans(1000), settings).entries) == 1000


def test_records_are_counted_on_the_wire_before_decoding() -> None:
    """The count that refuses a request agrees with the decoded request's, for traces and
    logs spread over resource and scope groups, and stops at the limit."""
    traces = ExportTraceServiceRequest()
    for r in range(3):
        group = traces.resource_spans.add(schema_url="s")
        group.resource.attributes.add(key="k", value=AnyValue(int_value=r))
        for _ in range(r + 1):
            scoped = group.scope_spans.add(schema_url="x")
            scoped.scope.name = "scope"
            for n in range(5):
                scoped.spans.add(name="x", start_time_unix_nano=n, trace_id=bytes(16))
    logs = ExportLogsServiceRequest()
    for _ in range(4):
        logs.resource_logs.add().scope_logs.add().log_records.add(observed_time_unix_nano=1)
    for request, total in ((traces, 30), (logs, 4)):
        data = request.SerializeToString()
        assert count_records(request) == total
        assert records_over(data, total) is None
        assert records_over(data, total - 1) == total
        assert records_over(data, 0) == 1  # stops counting past the limit
    assert records_over(b"\x0a\xff\xff", 0) is None  # not protobuf: the decoder says why
    assert records_over(b"", 0) is None


def test_a_request_of_half_a_million_spans_is_refused_without_decoding_it() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for n in range(500_000):
        spans.add(span_id=n.to_bytes(8, "big"))
    body = request.SerializeToString()
    started = time.perf_counter()
    with pytest.raises(PayloadTooLarge, match="more than 20000"):
        _prepare("traces", body)
    assert time.perf_counter() - started < 0.5  # a full decode takes about 1 s here


def test_a_request_that_can_never_fit_the_queue_is_not_answered_retryable(
    any_store: Store, tmp_path: Path
) -> None:
    sequencer = Sequencer(
        any_store,
        Checkpointer(any_store, SigningKey.generate("q"), "q", saved_path=tmp_path / "cp"),
        Metrics(),
        max_queue_records=4,
    )
    with pytest.raises(PayloadTooLarge, match="can never fit"):
        sequencer.submit(_prepare("traces", audit_request(5)).entries)


# -- resources and scopes -----------------------------------------------------------------


def test_resource_and_scope_attributes_are_limited_like_record_attributes() -> None:
    limits = Limits(max_attributes=4, max_value_bytes=100, max_resource_bytes=1000)
    settings = dataclasses.replace(_SETTINGS, limits=limits)
    wide = _prepare("traces", _spans(3, resource={f"k{i}": "v" for i in range(5)}), settings)
    assert (wide.rejected, len(wide.entries)) == (3, 0)
    assert "spans[0]: resource: 5 attributes, over the limit of 4" in wide.message
    long = _prepare("traces", _spans(2, resource={"k": "v" * 101}), settings)
    assert "resource: attribute 'k' is 103 bytes, over the limit of 100" in long.message
    small = dataclasses.replace(limits, max_resource_bytes=300)
    big = _prepare("traces", _spans(1, resource={f"k{i}": "v" * 90 for i in range(4)}),
                   dataclasses.replace(settings, limits=small))  # fmt: skip
    assert "resource: 400 bytes, over the limit of 300" in big.message
    request = ExportTraceServiceRequest.FromString(_spans(2))
    request.resource_spans[0].scope_spans[0].scope.attributes.extend(
        KeyValue(key=f"s{i}", value=AnyValue(string_value="v")) for i in range(5)
    )
    scoped = _prepare("traces", request.SerializeToString(), settings)
    assert (scoped.rejected, len(scoped.entries)) == (2, 0)
    assert "scope: 5 attributes" in scoped.message


def test_a_large_resource_over_many_tiny_spans_is_bounded_by_the_sealed_budget() -> None:
    """The attack: the largest resource allowed, copied into each of many tiny records."""
    body = _spans(1000, resource={f"r{i}": "v" * 4000 for i in range(15)})
    prepared = _prepare("traces", body)
    sealed = sum(len(e.sealed) for e in prepared.entries)
    budget = Limits().sealed_budget(len(body))
    assert 0 < sealed <= budget + 70_000  # at most one record past the budget's edge is refused
    assert prepared.rejected == 1000 - len(prepared.entries) > 0
    assert "would seal more than" in prepared.message
    # An ordinary export is far inside the budget.
    honest = audit_request(512)
    ordinary = _prepare("traces", honest)
    assert ordinary.rejected == 0
    assert (
        sum(len(e.sealed) for e in ordinary.entries) < len(honest) * Limits().max_sealed_ratio / 2
    )


def test_poison_times_beside_honest_exports_answer_no_one_503(server: Server) -> None:
    """The attack as sent: one client's spans past int64, interleaved with honest exports.
    The poison is rejected in partial_success; every honest export is acknowledged."""
    poison = _spans(50, times={"start_time_unix_nano": 2**64 - 1})

    def send(body: bytes) -> httpx.Response:
        return httpx.post(f"{server.http_url}/v1/traces", content=body, timeout=30,
                          headers={"Content-Type": "application/x-protobuf"})  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, [poison if n % 2 else audit_request(20) for n in range(24)]))
    assert [a.status_code for a in answers] == [200] * 24
    for n, answer in enumerate(answers):
        rejected = ExportTraceServiceResponse.FromString(answer.content).partial_success
        assert rejected.rejected_spans == (50 if n % 2 else 0)
    count = otaudit("sql", "--data", str(server.data), "--format", "csv",
                    "SELECT count(*) AS n FROM audit_spans")  # fmt: skip
    assert count.stdout.splitlines() == ["n", str(12 * 20)]


@given(st.binary(max_size=512), st.integers(0, 50))
def test_the_wire_count_takes_any_bytes(data: bytes, limit: int) -> None:
    over = records_over(data, limit)
    assert over is None or over == limit + 1
