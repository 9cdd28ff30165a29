"""``/metrics`` stays small whatever ``service.name`` values clients send (issue 14, finding 11).

Each non-conforming record is counted by its ``service`` label, which a client
chooses. Before the bound, 50,000 names made 50,000 permanent series (28 MB of
``/metrics``, 1.5 s to render); now the first ``MAX_LABEL_VALUES`` names keep
their series and the rest are counted under ``other``, nothing lost.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit.metrics import (
    MAX_LABEL_VALUE_CHARS,
    MAX_LABEL_VALUES,
    OTHER_LABEL_VALUE,
    BoundedLabel,
    Metrics,
)
from support import Server, post

_SERIES = "otaudit_records_nonconforming_total{"


def _samples(body: bytes) -> dict[str, float]:
    out = {}
    for line in body.decode().splitlines():
        if line.startswith(_SERIES):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_fifty_thousand_service_names_keep_metrics_small() -> None:
    metrics = Metrics()
    for i in range(50_000):
        metrics.nonconforming.labels(f"svc-{i:05d}-" + "x" * 200, "actor").inc()
    started = time.perf_counter()
    body = metrics.render()
    render_s = time.perf_counter() - started
    samples = _samples(body)
    assert len(samples) == MAX_LABEL_VALUES + 1  # the first N names, and "other"
    assert (
        samples[f'{_SERIES}missing="actor",service="{OTHER_LABEL_VALUE}"}}']
        == 50_000 - MAX_LABEL_VALUES
    )
    assert sum(samples.values()) == 50_000  # every record still counted
    assert len(body) < 100_000, f"/metrics is {len(body)} bytes"
    assert render_s < 0.5, f"rendering took {render_s:.2f} s"


def test_admitted_service_keeps_counting_after_the_bound() -> None:
    metrics = Metrics()
    metrics.nonconforming.labels("billing", "actor").inc()
    for i in range(MAX_LABEL_VALUES * 2):
        metrics.nonconforming.labels(f"noise-{i}", "result").inc()
    metrics.nonconforming.labels("billing", "actor,result").inc(3)
    samples = _samples(metrics.render())
    assert samples[f'{_SERIES}missing="actor",service="billing"}}'] == 1
    assert samples[f'{_SERIES}missing="actor,result",service="billing"}}'] == 3
    assert samples[f'{_SERIES}missing="result",service="other"}}'] == MAX_LABEL_VALUES + 1


def test_long_service_name_is_cut() -> None:
    label = BoundedLabel(limit=2)
    assert label.value("a" * 1_000_000) == "a" * MAX_LABEL_VALUE_CHARS
    assert label.value("a" * (MAX_LABEL_VALUE_CHARS + 1)) == "a" * MAX_LABEL_VALUE_CHARS
    assert label.value("b") == "b"
    assert label.value("c") == OTHER_LABEL_VALUE


def test_bounded_label_needs_room() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        BoundedLabel(limit=0)


def _nonconforming_request(services: int) -> bytes:
    """One request of audit spans without an actor, each from a service of its own."""
    req = ExportTraceServiceRequest()
    for i in range(services):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value=f"attacker-{i:04d}"))
        )
        n = i + 1
        span = rs.scope_spans.add().spans.add(
            trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"), name="config.update"
        )
        span.start_time_unix_nano = 1764288000000000000 + n
        span.attributes.append(
            KeyValue(key="audit.action", value=AnyValue(string_value="config_change"))
        )
    return req.SerializeToString()


def test_server_metrics_bound_client_service_names(server: Server) -> None:
    sent = MAX_LABEL_VALUES + 50
    assert post(server, _nonconforming_request(sent)).status_code == 200
    samples = {k: v for k, v in server.metrics().items() if k.startswith(_SERIES)}
    assert len(samples) == MAX_LABEL_VALUES + 1
    assert sum(samples.values()) == sent
    assert samples[f'{_SERIES}missing="actor,result",service="other"}}'] == 50
