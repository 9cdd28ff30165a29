"""The ambient actor, completeness numbering and AuditSampler, with a real SDK TracerProvider."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
import warnings
from collections.abc import Iterator

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    Tracer,
    set_span_in_context,
)

from otaudit.instrument import (
    Actor,
    actor,
    audit_span,
    configure,
    current_actor,
    next_number,
    producer_id,
)
from otaudit.instrument.context import without_enduser_baggage
from otaudit.instrument.sampling import AuditSampler


class Traces:
    def __init__(self, sampler: ParentBased | AuditSampler | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("test")

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


@pytest.fixture
def traces() -> Iterator[Traces]:
    t = Traces()
    yield t
    t.provider.shutdown()


def numbering(span: ReadableSpan) -> tuple[object, object]:
    assert span.attributes is not None
    return span.attributes["audit.producer.id"], span.attributes["audit.producer.seq"]


def test_producer_seq_is_dense_and_distinct_across_threads(traces: Traces) -> None:
    threads, per_thread = 8, 200
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            with audit_span("tick", tracer=traces.tracer):
                pass

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    numbers = [numbering(s) for s in traces.spans()]
    assert {pid for pid, _ in numbers} == {producer_id()}
    seqs = sorted(int(str(seq)) for _, seq in numbers)
    assert len(seqs) == threads * per_thread
    assert seqs == list(range(seqs[0], seqs[0] + threads * per_thread))


def test_numbering_is_shared_and_strictly_increasing(traces: Traces) -> None:
    for _ in range(5):
        with audit_span("tick", tracer=traces.tracer):
            pass
    seqs = [int(str(numbering(s)[1])) for s in traces.spans()]
    assert seqs == list(range(seqs[0], seqs[0] + 5))


def test_configure_producer_id_starts_a_new_numbering(traces: Traces) -> None:
    before = producer_id()
    chosen = f"worker-{uuid.uuid4()}"
    try:
        configure(producer_id=chosen)
        configure(producer_id=chosen)  # same id: keeps counting
        for _ in range(2):
            with audit_span("tick", tracer=traces.tracer):
                pass
    finally:
        configure(producer_id=f"restored-{before}")
    assert [numbering(s) for s in traces.spans()] == [(chosen, 1), (chosen, 2)]
    with pytest.raises(ValueError, match="producer_id must be a non-empty string"):
        configure(producer_id="")


def test_actor_nesting_and_client_address_inheritance() -> None:
    assert current_actor() is None
    with actor(None, client_address="198.51.100.2") as anonymous:
        assert current_actor() == anonymous == Actor(None, (), "198.51.100.2")
        with actor("dave", roles=("ops",)) as dave:
            assert dave == Actor("dave", ("ops",), "198.51.100.2")
            assert current_actor() is dave
        assert current_actor() is anonymous
    assert current_actor() is None
    with pytest.raises(ValueError, match="user_id must be a non-empty string or None"):
        actor("").__enter__()


def test_baggage_alone_never_names_the_actor(traces: Traces) -> None:
    # What OpenTelemetry's HTTP instrumentation leaves in the context from a caller's header.
    token = context.attach(baggage.set_baggage("enduser.id", "admin"))
    try:
        assert current_actor() is None
        with audit_span("read", tracer=traces.tracer):
            pass
        with actor("explicit"), audit_span("read", tracer=traces.tracer):
            pass
    finally:
        context.detach(token)
    actors = [s.attributes.get("enduser.id") for s in traces.spans() if s.attributes is not None]
    assert actors == [None, "explicit"]


def test_actor_propagate_puts_the_user_and_only_the_user_in_baggage() -> None:
    forged = baggage.set_baggage("enduser.role", "owner", baggage.set_baggage("enduser.id", "x"))
    token = context.attach(baggage.set_baggage("tenant", "t1", forged))
    try:
        with actor("erin", propagate=True):
            assert baggage.get_all() == {"tenant": "t1", "enduser.id": "erin"}
        with actor(None, propagate=True):
            assert baggage.get_all() == {"tenant": "t1"}
        with actor("frank"):
            assert baggage.get_baggage("enduser.id") == "x"  # not propagating: left alone
        assert without_enduser_baggage() is not context.get_current()
        assert baggage.get_all(without_enduser_baggage()) == {"tenant": "t1"}
    finally:
        context.detach(token)
    assert baggage.get_baggage("enduser.id") is None


def test_actor_follows_asyncio_tasks() -> None:
    async def child() -> Actor | None:
        await asyncio.sleep(0)
        return current_actor()

    async def main() -> tuple[Actor | None, Actor | None]:
        with actor("gina"):
            task = asyncio.create_task(child())
        return await task, current_actor()

    assert asyncio.run(main()) == (Actor("gina"), None)


def test_audit_sampler_keeps_audit_spans_of_unsampled_parents() -> None:
    unsampled = set_span_in_context(
        NonRecordingSpan(
            SpanContext(trace_id=0x1234, span_id=0x42, is_remote=True, trace_flags=TraceFlags(0))
        )
    )
    for sampler, expected in ((None, []), (AuditSampler(), ["audited"])):
        t = Traces(sampler)
        token = context.attach(unsampled)
        try:
            with audit_span("audited", tracer=t.tracer):
                pass
            with t.tracer.start_as_current_span("plain"):
                pass
        finally:
            context.detach(token)
        assert [s.name for s in t.spans()] == expected
        t.provider.shutdown()
    assert AuditSampler(ParentBased(ALWAYS_OFF)).get_description().startswith("AuditSampler{")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_is_a_new_producer() -> None:
    parent = producer_id()
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork in a threaded process
        pid = os.fork()
    if pid == 0:  # the child: report its numbering and leave without running pytest's teardown
        try:
            os.write(write, "{} {}".format(*next_number()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_id, child_seq = pipe.read().split()
    os.waitpid(pid, 0)
    assert child_id != parent
    assert str(uuid.UUID(child_id)) == child_id
    assert child_seq == "1"
    assert producer_id() == parent
