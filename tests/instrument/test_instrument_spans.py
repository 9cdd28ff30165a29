"""audit_span and audited with a real SDK TracerProvider and an in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    StatusCode,
    Tracer,
)

from otaudit.instrument import (
    actor,
    audit_attributes,
    audit_span,
    audited,
    producer_id,
)


class Traces:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("test")

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def only(self) -> ReadableSpan:
        (span,) = self.spans()
        return span


@pytest.fixture
def traces() -> Iterator[Traces]:
    t = Traces()
    yield t
    t.provider.shutdown()


def numbering(span: ReadableSpan) -> tuple[object, object]:
    assert span.attributes is not None
    return span.attributes["audit.producer.id"], span.attributes["audit.producer.seq"]


def without_numbering(span: ReadableSpan) -> dict[str, object]:
    assert span.attributes is not None
    out: dict[str, object] = dict(span.attributes)
    pid, seq = out.pop("audit.producer.id"), out.pop("audit.producer.seq")
    assert pid == producer_id()
    assert isinstance(seq, int) and seq >= 1
    return out


def test_audit_span_records_exact_attributes_and_success(traces: Traces) -> None:
    with (
        actor("alice", roles=["admin", "hr"], client_address="203.0.113.7"),
        audit_span(
            "role_update",
            target="bob",
            resource_type="user_permission",
            old="viewer",
            new="editor",
            attributes={"audit.change_source": "console", "ticket": 42, "dropped": None},
            tracer=traces.tracer,
        ) as span,
    ):
        assert span.is_recording()
    recorded = traces.only()
    assert recorded.name == "role_update"
    assert recorded.status.status_code is StatusCode.UNSET
    assert recorded.events == ()
    assert without_numbering(recorded) == {
        "enduser.id": "alice",
        "user.roles": ("admin", "hr"),
        "client.address": "203.0.113.7",
        "audit.change_source": "console",
        "ticket": 42,
        "audit.action": "role_update",
        "audit.target": "bob",
        "audit.resource_type": "user_permission",
        "audit.old_value": "viewer",
        "audit.new_value": "editor",
        "audit.result": "success",
    }


def test_values_that_are_not_attribute_values_become_json(traces: Traces) -> None:
    with audit_span(
        "config_change",
        name="config.update",
        target=7,
        old={"mfa": False},
        new={"mfa": True, "keys": ["a", "b"]},
        tracer=traces.tracer,
    ):
        pass
    recorded = traces.only()
    assert recorded.name == "config.update"
    assert without_numbering(recorded) == {
        "audit.action": "config_change",
        "audit.target": "7",
        "audit.old_value": '{"mfa":false}',
        "audit.new_value": '{"keys":["a","b"],"mfa":true}',
        "audit.result": "success",
    }


def test_a_result_set_by_the_body_is_kept(traces: Traces) -> None:
    with audit_span("record_view", tracer=traces.tracer) as span:
        span.set_attribute("audit.result", "denied")
    recorded = traces.only()
    assert recorded.attributes is not None
    assert recorded.attributes["audit.result"] == "denied"
    assert recorded.status.status_code is StatusCode.UNSET


class PermissionDenied(Exception):
    pass


def test_failure_records_error_type_status_and_reraises(traces: Traces) -> None:
    with (
        pytest.raises(PermissionDenied, match="not yours"),
        actor("mallory"),
        audit_span("record_delete", target="r1", tracer=traces.tracer),
    ):
        raise PermissionDenied("not yours")
    recorded = traces.only()
    assert recorded.status.status_code is StatusCode.ERROR
    assert recorded.status.description == f"{__name__}.PermissionDenied: not yours"
    attrs = without_numbering(recorded)
    assert attrs == {
        "enduser.id": "mallory",
        "audit.action": "record_delete",
        "audit.target": "r1",
        "audit.result": "failure",
        "error.type": f"{__name__}.PermissionDenied",
    }
    (event,) = recorded.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "not yours"


def test_failure_of_a_builtin_exception_and_a_denied_body(traces: Traces) -> None:
    # The body runs inside the span: each raises from within it.
    with pytest.raises(KeyError), audit_span("a", tracer=traces.tracer):  # noqa: PT012
        empty: dict[str, int] = {}
        empty["missing"]
    with pytest.raises(RuntimeError), audit_span("b", tracer=traces.tracer) as span:  # noqa: PT012
        span.set_attribute("audit.result", "denied")
        raise RuntimeError
    with pytest.raises(RuntimeError), audit_span("c", tracer=traces.tracer) as span:  # noqa: PT012
        span.set_attribute("audit.result", "success")
        raise RuntimeError("after the fact")
    results = {
        s.name: (s.attributes["audit.result"], s.attributes["error.type"])
        for s in traces.spans()
        if s.attributes is not None
    }
    assert results == {
        "a": ("failure", "KeyError"),
        "b": ("denied", "RuntimeError"),
        "c": ("failure", "RuntimeError"),
    }


def test_audited_sync_with_callable_target(traces: Traces) -> None:
    @audited(
        "role_update",
        target=lambda user_id, **_: user_id,
        new=lambda new_role, **_: new_role,
        resource_type="user_permission",
        tracer=traces.tracer,
    )
    def update_role(user_id: str, new_role: str, *, notify: bool = True) -> str:
        """Docstring kept."""
        return f"{user_id}:{new_role}:{notify}"

    with actor("admin-1"):
        assert update_role("bob", new_role="editor") == "bob:editor:True"
        assert update_role(user_id="carol", new_role="viewer", notify=False)
    assert update_role.__doc__ == "Docstring kept."
    first, second = traces.spans()
    assert without_numbering(first) == {
        "enduser.id": "admin-1",
        "audit.action": "role_update",
        "audit.target": "bob",
        "audit.resource_type": "user_permission",
        "audit.new_value": "editor",
        "audit.result": "success",
    }
    assert second.attributes is not None and second.attributes["audit.target"] == "carol"
    assert numbering(second)[1] == int(str(numbering(first)[1])) + 1


def test_audited_async_success_and_failure(traces: Traces) -> None:
    @audited("export", target=lambda dataset, **_: dataset, tracer=traces.tracer)
    async def export(dataset: str, *, fail: bool = False) -> int:
        await asyncio.sleep(0)
        if fail:
            raise TimeoutError("slow")
        return 3

    async def main() -> None:
        with actor("svc-reporting", roles="reporter"):
            assert await export("payroll") == 3
            with pytest.raises(TimeoutError):
                await export("hr", fail=True)

    asyncio.run(main())
    ok, failed = traces.spans()
    assert ok.attributes is not None and failed.attributes is not None
    assert ok.attributes["audit.result"] == "success"
    assert ok.attributes["user.roles"] == ("reporter",)
    assert (failed.attributes["audit.result"], failed.attributes["error.type"]) == (
        "failure",
        "TimeoutError",
    )
    assert failed.attributes["audit.target"] == "hr"
    assert failed.status.status_code is StatusCode.ERROR


def test_audited_refuses_generators() -> None:
    with pytest.raises(TypeError, match="generator"):

        @audited("x")
        def gen() -> Iterator[int]:
            yield 1


def test_attributes_may_not_override_numbering(traces: Traces) -> None:
    with (
        pytest.raises(ValueError, match=r"audit\.producer\.seq"),
        audit_span("x", attributes={"audit.producer.seq": 1}, tracer=traces.tracer),
    ):
        pass
    assert traces.spans() == ()


def test_a_target_user_is_written_under_both_names(traces: Traces) -> None:
    @audited("user_delete", target_user=lambda user_id, **_: user_id, tracer=traces.tracer)
    def delete_user(user_id: str) -> None:
        """Deletes."""

    delete_user("bob")
    with audit_span("role_update", target_user=42, tracer=traces.tracer):
        pass
    first, second = traces.spans()
    for span, user in ((first, "bob"), (second, "42")):
        attributes = without_numbering(span)
        assert attributes["audit.target"] == attributes["audit.target_user"] == user
    with pytest.raises(ValueError, match="target or target_user, not both"):
        audit_attributes("role_update", target="bob", target_user="bob")
