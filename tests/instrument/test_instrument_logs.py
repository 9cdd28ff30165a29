"""audit_log with a real SDK LoggerProvider, and the logging pitfall it avoids."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from otaudit.instrument import actor, audit_attributes, audit_log, audit_span, producer_id


class Logs:
    def __init__(self) -> None:
        self.exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))

    def records(self) -> list[ReadableLogRecord]:
        return list(self.exporter.get_finished_logs())


@pytest.fixture
def logs() -> Iterator[Logs]:
    logs = Logs()
    yield logs
    logs.provider.shutdown()


def attributes_of(record: ReadableLogRecord) -> dict[str, object]:
    assert record.log_record.attributes is not None
    return dict(record.log_record.attributes)


def test_audit_log_body_severity_and_attributes(logs: Logs) -> None:
    with actor("alice", roles=["admin"], client_address="192.0.2.10"):
        audit_log(
            "config_change",
            "System configuration changed",
            severity="warning",
            target="mfa_required",
            resource_type="system_config",
            old=False,
            new=True,
            attributes={"audit.severity": "high"},
            logger_provider=logs.provider,
        )
    (record,) = logs.records()
    log = record.log_record
    assert log.body == "System configuration changed"
    assert (log.severity_number, log.severity_text) == (SeverityNumber.WARN, "WARN")
    assert log.timestamp is not None and log.timestamp > 0
    assert record.instrumentation_scope is not None
    assert record.instrumentation_scope.name == "otaudit.instrument"
    attrs = attributes_of(record)
    assert attrs.pop("audit.producer.id") == producer_id()
    assert isinstance(attrs.pop("audit.producer.seq"), int)
    assert attrs == {
        "enduser.id": "alice",
        "user.roles": ("admin",),
        "client.address": "192.0.2.10",
        "audit.severity": "high",
        "audit.action": "config_change",
        "audit.target": "mfa_required",
        "audit.resource_type": "system_config",
        "audit.old_value": False,
        "audit.new_value": True,
        "audit.result": "success",
    }


def test_severity_forms_and_result(logs: Logs) -> None:
    audit_log("a", "m", logger_provider=logs.provider)
    audit_log(
        "b", "m", severity=SeverityNumber.ERROR, result="failure", logger_provider=logs.provider
    )
    audit_log("c", "m", severity="critical", result=None, logger_provider=logs.provider)
    got = [
        (
            r.log_record.severity_number,
            r.log_record.severity_text,
            attributes_of(r).get("audit.result"),
        )
        for r in logs.records()
    ]
    assert got == [
        (SeverityNumber.INFO, "INFO", "success"),
        (SeverityNumber.ERROR, "ERROR", "failure"),
        (SeverityNumber.FATAL, "FATAL", None),
    ]
    with pytest.raises(ValueError, match="unknown severity"):
        audit_log("d", "m", severity="LOUD", logger_provider=logs.provider)


def test_spans_and_logs_share_one_numbering_and_logs_join_the_trace(logs: Logs) -> None:
    tracer_provider = TracerProvider()
    with audit_span("outer", tracer=tracer_provider.get_tracer("t")) as span:
        audit_log("inner", "inside the span", logger_provider=logs.provider)
        audit_log("inner", "inside the span", logger_provider=logs.provider)
    first, second = logs.records()
    assert first.log_record.trace_id == span.get_span_context().trace_id
    assert first.log_record.span_id == span.get_span_context().span_id
    s1 = attributes_of(first)["audit.producer.seq"]
    s2 = attributes_of(second)["audit.producer.seq"]
    assert isinstance(s1, int) and s2 == s1 + 1
    tracer_provider.shutdown()


ARTICLE_EXTRA = {
    "audit.action": "config_change",
    "audit.changed_by": "alice",
    "audit.severity": "high",
}


@pytest.fixture
def audit_system_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("audit.system")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.setLevel(logging.INFO)
    logger.propagate = False  # keep pytest's capture handlers on the root out of it
    logger.handlers.clear()
    yield logger
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


def test_the_articles_snippet_exports_nothing(
    logs: Logs, audit_system_logger: logging.Logger
) -> None:
    # The widely copied snippet: a LoggerProvider exists, Python logging is used, no handler.
    audit_system_logger.info("System configuration changed", extra=ARTICLE_EXTRA)
    logs.provider.force_flush()
    assert logs.records() == []

    # The helper goes through the logs API, so the same provider gets the record.
    audit_log(
        "config_change",
        "System configuration changed",
        attributes={"audit.changed_by": "alice", "audit.severity": "high"},
        logger_provider=logs.provider,
    )
    (record,) = logs.records()
    assert record.log_record.body == "System configuration changed"
    attrs = attributes_of(record)
    assert {key: attrs[key] for key in ARTICLE_EXTRA} == ARTICLE_EXTRA


def test_attaching_a_logging_handler_makes_the_snippet_export(
    logs: Logs, audit_system_logger: logging.Logger
) -> None:
    audit_system_logger.addHandler(LoggingHandler(logger_provider=logs.provider))
    audit_system_logger.info("System configuration changed", extra=ARTICLE_EXTRA)
    (record,) = logs.records()
    assert record.log_record.body == "System configuration changed"
    attrs = attributes_of(record)
    assert {key: attrs[key] for key in ARTICLE_EXTRA} == ARTICLE_EXTRA


def test_audit_attributes_number_records_sent_through_the_handler(
    logs: Logs, audit_system_logger: logging.Logger
) -> None:
    audit_system_logger.addHandler(LoggingHandler(logger_provider=logs.provider))
    with actor("alice", roles=["admin"]):
        for _ in range(2):
            audit_system_logger.info(
                "System configuration changed",
                extra=audit_attributes("config_change", target="mfa_required", result="success"),
            )
    first, second = (attributes_of(r) for r in logs.records())
    assert first["enduser.id"] == "alice"
    assert first["user.roles"] == ("admin",)
    assert first["audit.producer.id"] == producer_id()
    assert isinstance(first["audit.producer.seq"], int)
    assert second["audit.producer.seq"] == first["audit.producer.seq"] + 1


def test_the_handler_needs_the_loggers_level_and_audit_log_does_not(
    logs: Logs, audit_system_logger: logging.Logger
) -> None:
    audit_system_logger.addHandler(LoggingHandler(logger_provider=logs.provider))
    audit_system_logger.setLevel(logging.NOTSET)  # as a new logger is: the root's WARNING
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.WARNING)
    try:
        audit_system_logger.info("dropped below the level", extra=ARTICLE_EXTRA)
        assert logs.records() == []  # why the docs set the logger to INFO
        audit_log("config_change", "sent whatever the levels", logger_provider=logs.provider)
        root.setLevel(logging.CRITICAL)
        audit_log("config_change", "still sent", logger_provider=logs.provider)
    finally:
        root.setLevel(saved)
    assert [r.log_record.body for r in logs.records()] == [
        "sent whatever the levels",
        "still sent",
    ]
