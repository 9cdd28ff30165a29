"""Audit log records through the OpenTelemetry logs API: :func:`audit_log`.

Unlike ``logging.getLogger(...).info(..., extra={...})``, which exports nothing
until an OpenTelemetry ``LoggingHandler`` is attached to that logger, this
emits straight into a ``LoggerProvider`` (the global one, or the one given).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber, get_logger

from otaudit.instrument.attributes import RESULT_SUCCESS, SCOPE_NAME
from otaudit.instrument.meta import VERSION as __version__
from otaudit.instrument.record import audit_attributes

__all__ = ["audit_log"]

_SEVERITY: Final[dict[str, SeverityNumber]] = {
    "TRACE": SeverityNumber.TRACE,
    "DEBUG": SeverityNumber.DEBUG,
    "INFO": SeverityNumber.INFO,
    "WARN": SeverityNumber.WARN,
    "WARNING": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
    "FATAL": SeverityNumber.FATAL,
    "CRITICAL": SeverityNumber.FATAL,
}


def _severity(severity: str | SeverityNumber) -> tuple[SeverityNumber, str]:
    if isinstance(severity, SeverityNumber):
        return severity, severity.name
    number = _SEVERITY.get(severity.upper())
    if number is None:
        raise ValueError(f"unknown severity {severity!r}; use one of {sorted(_SEVERITY)}")
    return number, number.name


def audit_log(
    action: str,
    message: str,
    *,
    severity: str | SeverityNumber = "INFO",
    target: object = None,
    target_user: object = None,
    resource_type: str | None = None,
    old: object = None,
    new: object = None,
    result: str | None = RESULT_SUCCESS,
    attributes: Mapping[str, object] | None = None,
    logger_provider: LoggerProvider | None = None,
) -> None:
    """Emit one audit log record through the OpenTelemetry logs API.

    The body is ``message``; ``severity`` is a level name (``TRACE``, ``DEBUG``,
    ``INFO``, ``WARN``/``WARNING``, ``ERROR``, ``FATAL``/``CRITICAL``, any case)
    or a ``SeverityNumber``, sent as number and text (``WARNING`` is sent as
    ``WARN``). The attributes are those of :func:`audit_attributes` (ambient
    actor, the arguments, the next producer number); ``result=None`` leaves
    ``audit.result`` out. The record belongs to the current span, if any.
    ``logger_provider`` defaults to the global one. Python ``logging`` handlers
    play no part.
    """
    number, text = _severity(severity)
    record = audit_attributes(
        action,
        target=target,
        target_user=target_user,
        resource_type=resource_type,
        old=old,
        new=new,
        result=result,
        attributes=attributes,
    )
    logger = get_logger(SCOPE_NAME, __version__, logger_provider=logger_provider)
    logger.emit(
        LogRecord(
            timestamp=time.time_ns(),
            severity_number=number,
            severity_text=text,
            body=message,
            attributes=record,
        )
    )
