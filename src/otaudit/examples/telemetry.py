"""OpenTelemetry SDK setup for the example service: spans and log records to otaudit."""

from __future__ import annotations

from opentelemetry import _logs, trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otaudit.instrument.sampling import AuditSampler


def setup(endpoint: str, service: str = "accounts-api") -> tuple[TracerProvider, LoggerProvider]:
    """Install global tracer and logger providers exporting OTLP/HTTP to ``endpoint``."""
    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource, sampler=AuditSampler())
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"))
    )
    _logs.set_logger_provider(logger_provider)
    return tracer_provider, logger_provider
