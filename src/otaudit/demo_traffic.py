"""Realistic instrumented traffic for ``otaudit demo``, sent through the real OpenTelemetry SDK.

Two services: ``accounts-api`` exports spans over OTLP/HTTP (protobuf, gzip)
and ``billing-api`` over OTLP/gRPC; system events go through the logs signal
with a ``LoggingHandler`` actually attached to the ``audit.system`` logger
(without a handler, ``logger.info(..., extra=...)`` exports nothing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode, Tracer


@dataclass(frozen=True)
class TrafficSummary:
    """How many spans and log records the demo sent, and how many were audit records."""

    spans: int
    audit_spans: int
    logs: int


def _login(tracer: Tracer, user: str, ip: str, ok: bool) -> None:
    with tracer.start_as_current_span("POST /login") as span:
        span.set_attribute("user.id", user)
        span.set_attribute("client.address", ip)
        span.set_attribute("audit.action", "login")
        span.set_attribute("audit.resource_type", "session")
        span.set_attribute("audit.result", "success" if ok else "failure")
        if not ok:
            span.set_status(Status(StatusCode.ERROR, "invalid credentials"))


def _role_update(tracer: Tracer, admin: str, target: str, old: str, new: str) -> None:
    # The seed article's attribute names, as most existing instrumentation uses them.
    with tracer.start_as_current_span("user.role.update") as span:
        span.set_attribute("enduser.id", admin)
        span.set_attribute("enduser.role", "admin")
        span.set_attribute("enduser.ip", "10.0.4.17")
        span.set_attribute("audit.action", "role_update")
        span.set_attribute("audit.target_user", target)
        span.set_attribute("audit.old_value", old)
        span.set_attribute("audit.new_value", new)
        span.set_attribute("audit.resource_type", "user_permission")
        span.set_attribute("audit.result", "success")


def _read(tracer: Tracer, user: str, resource: str, kind: str) -> None:
    with tracer.start_as_current_span(f"GET /{kind}/{{id}}") as span:
        span.set_attribute("user.id", user)
        span.set_attribute("user.roles", ["support"])
        span.set_attribute("client.address", "10.0.7.3")
        span.set_attribute("audit.action", "read")
        span.set_attribute("audit.target", resource)
        span.set_attribute("audit.resource_type", kind)
        span.set_attribute("audit.result", "success")


def send_traffic(http_endpoint: str, grpc_endpoint: str) -> TrafficSummary:
    """Send the demo's mix of audit and ordinary telemetry and flush everything."""
    accounts = TracerProvider(resource=Resource.create({"service.name": "accounts-api"}))
    accounts.add_span_processor(
        BatchSpanProcessor(
            HttpSpanExporter(endpoint=f"{http_endpoint}/v1/traces", compression=Compression.Gzip)
        )
    )
    billing = TracerProvider(resource=Resource.create({"service.name": "billing-api"}))
    billing.add_span_processor(
        BatchSpanProcessor(GrpcSpanExporter(endpoint=grpc_endpoint, insecure=True))
    )
    logs = LoggerProvider(resource=Resource.create({"service.name": "config-service"}))
    logs.add_log_record_processor(
        BatchLogRecordProcessor(GrpcLogExporter(endpoint=grpc_endpoint, insecure=True))
    )
    handler = LoggingHandler(level=logging.INFO, logger_provider=logs)
    audit_log = logging.getLogger("audit.system")
    audit_log.setLevel(logging.INFO)
    audit_log.propagate = False
    audit_log.addHandler(handler)

    a = accounts.get_tracer("accounts-api")
    b = billing.get_tracer("billing-api")
    spans = audit = 0
    for user in ("alice", "bob", "carol"):
        _login(a, user, "198.51.100.20", ok=True)
        spans, audit = spans + 1, audit + 1
    for _ in range(6):
        _login(a, "dave", "203.0.113.66", ok=False)
        spans, audit = spans + 1, audit + 1
    _login(a, "dave", "203.0.113.66", ok=True)
    _role_update(a, "alice", "bob", "viewer", "editor")
    _role_update(a, "alice", "carol", "editor", "admin")
    _role_update(a, "carol", "carol", "admin", "owner")
    spans, audit = spans + 4, audit + 4
    for i, customer in enumerate(("cust-1042", "cust-2213", "cust-0007", "cust-1042")):
        _read(b, "bob" if i % 2 else "erin", customer, "customer_record")
        spans, audit = spans + 1, audit + 1
    for path in ("/health", "/products", "/products/42", "/cart") * 5:
        with b.start_as_current_span(f"GET {path}") as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("url.path", path)
        spans += 1
    audit_log.info(
        "System configuration changed",
        extra={
            "audit.action": "config_change",
            "audit.changed_by": "alice",
            "audit.config_keys_modified": ["session_timeout", "mfa_required"],
            "audit.change_source": "admin_api",
            "audit.severity": "high",
        },
    )
    audit_log.info(
        "Retention policy changed",
        extra={
            "audit.action": "config_change",
            "audit.changed_by": "carol",
            "audit.old_value": "365d",
            "audit.new_value": "30d",
            "audit.severity": "high",
        },
    )
    for provider in (accounts, billing):
        provider.force_flush()
        provider.shutdown()
    logs.force_flush()
    audit_log.removeHandler(handler)
    logs.shutdown()
    return TrafficSummary(spans=spans, audit_spans=audit, logs=2)
