"""Tests of the OTLP/JSON decoder (otaudit.otlp.otlpjson).

Rules under test come from the OTLP specification, "JSON Protobuf Encoding":
https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
"""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otaudit.errors import DecodeError
from otaudit.otlp import otlpjson
from otaudit.otlp.otlpjson import decode_logs_json, decode_metrics_json, decode_traces_json

TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"
PARENT_ID = "EEE19B7EC3C1B173"


def _body(document: Any) -> bytes:
    return orjson.dumps(document)


def _spans(*spans: dict[str, Any]) -> bytes:
    """A traces request with the given spans in resourceSpans[0].scopeSpans[0]."""
    return _body({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]})


def _one_span(span: dict[str, Any]) -> Span:
    result: Span = decode_traces_json(_spans(span)).resource_spans[0].scope_spans[0].spans[0]
    return result


def _attr_value(value: Any) -> AnyValue:
    """Decode ``value`` as the value of the first attribute of a span."""
    span = _one_span({"attributes": [{"key": "k", "value": value}]})
    result: AnyValue = span.attributes[0].value
    return result


def _log_records(*records: dict[str, Any]) -> bytes:
    return _body({"resourceLogs": [{"scopeLogs": [{"logRecords": list(records)}]}]})


def _decode_error(body: bytes, decode: Any = decode_traces_json) -> str:
    with pytest.raises(DecodeError) as info:
        decode(body)
    return str(info.value)


# --------------------------------------------------------------------------- full requests

FULL_TRACES = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "my.service"}},
                ],
                "droppedAttributesCount": 1,
            },
            "scopeSpans": [
                {
                    "scope": {
                        "name": "my.library",
                        "version": "1.0.0",
                        "attributes": [
                            {
                                "key": "my.scope.attribute",
                                "value": {"stringValue": "some scope attribute"},
                            },
                        ],
                        "droppedAttributesCount": 2,
                    },
                    "spans": [
                        {
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                            "traceState": "vendor=value",
                            "parentSpanId": PARENT_ID,
                            "flags": 257,
                            "name": "I'm a server span",
                            "kind": 2,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": 1544712661000000000,
                            "attributes": [
                                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                                {"key": "count", "value": {"intValue": "42"}},
                                {"key": "ok", "value": {"boolValue": True}},
                                {"key": "ratio", "value": {"doubleValue": 0.5}},
                            ],
                            "droppedAttributesCount": 3,
                            "events": [
                                {
                                    "timeUnixNano": "1544712660500000000",
                                    "name": "exception",
                                    "attributes": [
                                        {
                                            "key": "exception.type",
                                            "value": {"stringValue": "ValueError"},
                                        },
                                    ],
                                    "droppedAttributesCount": 4,
                                },
                            ],
                            "droppedEventsCount": 5,
                            "links": [
                                {
                                    "traceId": "0af7651916cd43dd8448eb211c80319c",
                                    "spanId": "b7ad6b7169203331",
                                    "traceState": "a=b",
                                    "attributes": [
                                        {"key": "link.kind", "value": {"stringValue": "follows"}},
                                    ],
                                    "droppedAttributesCount": 6,
                                    "flags": 1,
                                },
                            ],
                            "droppedLinksCount": 7,
                            "status": {"message": "boom", "code": 2},
                        },
                    ],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.24.0",
                },
            ],
            "schemaUrl": "https://opentelemetry.io/schemas/1.25.0",
        },
    ],
}


def test_full_traces_request() -> None:
    request = decode_traces_json(_body(FULL_TRACES))
    assert isinstance(request, ExportTraceServiceRequest)
    (resource_spans,) = request.resource_spans
    assert resource_spans.schema_url == "https://opentelemetry.io/schemas/1.25.0"
    resource = resource_spans.resource
    assert [(a.key, a.value.string_value) for a in resource.attributes] == [
        ("service.name", "my.service")
    ]
    assert resource.dropped_attributes_count == 1
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.schema_url == "https://opentelemetry.io/schemas/1.24.0"
    scope = scope_spans.scope
    assert (scope.name, scope.version, scope.dropped_attributes_count) == (
        "my.library",
        "1.0.0",
        2,
    )
    assert scope.attributes[0].key == "my.scope.attribute"
    assert scope.attributes[0].value.string_value == "some scope attribute"

    (span,) = scope_spans.spans
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert span.trace_state == "vendor=value"
    assert span.flags == 257
    assert span.name == "I'm a server span"
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1544712661000000000
    attrs = span.attributes
    assert [a.key for a in attrs] == ["my.span.attr", "count", "ok", "ratio"]
    assert attrs[0].value.string_value == "some value"
    assert attrs[1].value.int_value == 42
    assert attrs[2].value.bool_value is True
    assert attrs[3].value.double_value == 0.5
    assert span.dropped_attributes_count == 3

    (event,) = span.events
    assert event.time_unix_nano == 1544712660500000000
    assert event.name == "exception"
    assert event.attributes[0].key == "exception.type"
    assert event.attributes[0].value.string_value == "ValueError"
    assert event.dropped_attributes_count == 4
    assert span.dropped_events_count == 5

    (link,) = span.links
    assert link.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert link.span_id == bytes.fromhex("b7ad6b7169203331")
    assert link.trace_state == "a=b"
    assert link.attributes[0].value.string_value == "follows"
    assert link.dropped_attributes_count == 6
    assert link.flags == 1
    assert span.dropped_links_count == 7

    assert span.status.message == "boom"
    assert span.status.code == Status.STATUS_CODE_ERROR


FULL_LOGS = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "auth"}}],
            },
            "scopeLogs": [
                {
                    "scope": {"name": "audit", "version": "2.0"},
                    "logRecords": [
                        {
                            "timeUnixNano": "1544712660300000000",
                            "observedTimeUnixNano": 1544712660300000001,
                            "severityNumber": 10,
                            "severityText": "Information",
                            "traceId": TRACE_ID.lower(),
                            "spanId": SPAN_ID.lower(),
                            "body": {"stringValue": "user logged in"},
                            "attributes": [
                                {"key": "user.id", "value": {"intValue": 7}},
                                {
                                    "key": "tags",
                                    "value": {
                                        "arrayValue": {
                                            "values": [
                                                {"stringValue": "a"},
                                                {"stringValue": "b"},
                                            ]
                                        }
                                    },
                                },
                            ],
                            "droppedAttributesCount": 1,
                            "flags": 1,
                            "eventName": "user.login",
                        },
                    ],
                    "schemaUrl": "https://example.com/scope",
                },
            ],
            "schemaUrl": "https://example.com/resource",
        },
    ],
}


def test_full_logs_request() -> None:
    request = decode_logs_json(_body(FULL_LOGS))
    (resource_logs,) = request.resource_logs
    assert resource_logs.schema_url == "https://example.com/resource"
    assert resource_logs.resource.attributes[0].value.string_value == "auth"
    (scope_logs,) = resource_logs.scope_logs
    assert scope_logs.schema_url == "https://example.com/scope"
    assert (scope_logs.scope.name, scope_logs.scope.version) == ("audit", "2.0")
    (record,) = scope_logs.log_records
    assert record.time_unix_nano == 1544712660300000000
    assert record.observed_time_unix_nano == 1544712660300000001
    assert record.severity_number == 10
    assert record.severity_text == "Information"
    assert record.trace_id == bytes.fromhex(TRACE_ID)
    assert record.span_id == bytes.fromhex(SPAN_ID)
    assert record.body.string_value == "user logged in"
    assert record.attributes[0].key == "user.id"
    assert record.attributes[0].value.int_value == 7
    tags = record.attributes[1].value.array_value.values
    assert [v.string_value for v in tags] == ["a", "b"]
    assert record.dropped_attributes_count == 1
    assert record.flags == 1
    if "event_name" in LogRecord.DESCRIPTOR.fields_by_name:
        assert record.event_name == "user.login"


def test_logs_severity_number_as_name() -> None:
    body = _log_records(
        {
            "severityNumber": "SEVERITY_NUMBER_WARN",
            "body": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "1"}}]}},
        }
    )
    (record,) = decode_logs_json(body).resource_logs[0].scope_logs[0].log_records
    assert record.severity_number == 13
    assert record.body.kvlist_value.values[0].value.int_value == 1


FULL_METRICS = {
    "resourceMetrics": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "m"}}]},
            "scopeMetrics": [
                {
                    "scope": {"name": "meter"},
                    "metrics": [
                        {
                            "name": "g",
                            "unit": "1",
                            "description": "a gauge",
                            "gauge": {
                                "dataPoints": [
                                    {"asDouble": 1.5, "timeUnixNano": "1"},
                                    {
                                        "asInt": "2",
                                        "timeUnixNano": 2,
                                        "exemplars": [
                                            {
                                                "asInt": 3,
                                                "traceId": TRACE_ID,
                                                "spanId": SPAN_ID,
                                                "filteredAttributes": [],
                                                "timeUnixNano": "3",
                                            }
                                        ],
                                    },
                                ]
                            },
                        },
                        {
                            "name": "s",
                            "sum": {
                                "aggregationTemporality": 2,
                                "isMonotonic": True,
                                "dataPoints": [{"asInt": "9007199254740993"}],
                            },
                        },
                        {
                            "name": "h",
                            "histogram": {
                                "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
                                "dataPoints": [
                                    {
                                        "count": "3",
                                        "sum": 6.0,
                                        "bucketCounts": ["1", 2],
                                        "explicitBounds": [1.0],
                                        "min": 1,
                                        "max": 3,
                                    },
                                    {"count": 0},
                                ],
                            },
                        },
                        {
                            "name": "e",
                            "exponentialHistogram": {
                                "aggregationTemporality": 1,
                                "dataPoints": [
                                    {
                                        "count": "4",
                                        "scale": -2,
                                        "zeroCount": "1",
                                        "zeroThreshold": 0.001,
                                        "positive": {"offset": -1, "bucketCounts": ["1", "2"]},
                                        "negative": {"offset": 0, "bucketCounts": []},
                                    },
                                ],
                            },
                        },
                        {
                            "name": "q",
                            "summary": {
                                "dataPoints": [
                                    {
                                        "count": "2",
                                        "sum": 3.0,
                                        "quantileValues": [
                                            {"quantile": 0.5, "value": 1},
                                            {"quantile": 1, "value": "NaN"},
                                        ],
                                    },
                                    {"count": "1"},
                                    {"count": "1"},
                                ]
                            },
                        },
                    ],
                }
            ],
        }
    ],
}


def test_full_metrics_request() -> None:
    request = decode_metrics_json(_body(FULL_METRICS))
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    assert [m.name for m in metrics] == ["g", "s", "h", "e", "q"]
    assert [m.WhichOneof("data") for m in metrics] == [
        "gauge",
        "sum",
        "histogram",
        "exponential_histogram",
        "summary",
    ]
    counts = [len(getattr(m, str(m.WhichOneof("data"))).data_points) for m in metrics]
    assert counts == [2, 1, 2, 1, 3]
    gauge = metrics[0].gauge.data_points
    assert gauge[0].as_double == 1.5
    assert gauge[1].as_int == 2
    exemplar = gauge[1].exemplars[0]
    assert exemplar.trace_id == bytes.fromhex(TRACE_ID)
    assert exemplar.span_id == bytes.fromhex(SPAN_ID)
    assert exemplar.as_int == 3
    assert metrics[1].sum.data_points[0].as_int == 9007199254740993
    assert metrics[1].sum.is_monotonic is True
    assert metrics[1].sum.aggregation_temporality == 2
    histogram = metrics[2].histogram
    assert histogram.aggregation_temporality == 1
    point = histogram.data_points[0]
    assert (point.count, point.sum, list(point.bucket_counts)) == (3, 6.0, [1, 2])
    assert (point.min, point.max) == (1.0, 3.0)
    assert point.HasField("sum")
    assert not histogram.data_points[1].HasField("sum")
    exp = metrics[3].exponential_histogram.data_points[0]
    assert (exp.scale, exp.zero_count, exp.positive.offset) == (-2, 1, -1)
    assert list(exp.positive.bucket_counts) == [1, 2]
    quantiles = metrics[4].summary.data_points[0].quantile_values
    assert quantiles[0].value == 1.0
    assert math.isnan(quantiles[1].value)


def test_metric_with_two_data_kinds_rejected() -> None:
    document = {
        "resourceMetrics": [
            {"scopeMetrics": [{"metrics": [{"name": "x", "gauge": {}, "sum": {}}]}]}
        ]
    }
    message = _decode_error(_body(document), decode_metrics_json)
    assert message.startswith("resourceMetrics[0].scopeMetrics[0].metrics[0]: ")
    assert "'gauge'" in message and "'sum'" in message


def test_number_data_point_with_two_values_rejected() -> None:
    document = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {"metrics": [{"gauge": {"dataPoints": [{"asInt": "1", "asDouble": 1.0}]}}]}
                ]
            }
        ]
    }
    message = _decode_error(_body(document), decode_metrics_json)
    assert message.startswith("resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]:")


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    "trace_id", [TRACE_ID, TRACE_ID.lower(), "5b8EFFf798038103d269B633813fc60c"]
)
def test_ids_are_case_insensitive_hex(trace_id: str) -> None:
    span = _one_span({"traceId": trace_id, "spanId": SPAN_ID.lower()})
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)


def test_empty_ids_mean_absent() -> None:
    span = _one_span({"traceId": "", "spanId": "", "parentSpanId": ""})
    assert (span.trace_id, span.span_id, span.parent_span_id) == (b"", b"", b"")


SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


@pytest.mark.parametrize(
    ("span", "path", "digits"),
    [
        ({"traceId": TRACE_ID[:30]}, f"{SPAN_PATH}.traceId", 32),
        ({"traceId": TRACE_ID + "00"}, f"{SPAN_PATH}.traceId", 32),
        ({"spanId": SPAN_ID[:15]}, f"{SPAN_PATH}.spanId", 16),
        ({"parentSpanId": PARENT_ID + "0"}, f"{SPAN_PATH}.parentSpanId", 16),
        ({"links": [{"traceId": SPAN_ID}]}, f"{SPAN_PATH}.links[0].traceId", 32),
        ({"links": [{}, {"spanId": TRACE_ID}]}, f"{SPAN_PATH}.links[1].spanId", 16),
    ],
)
def test_wrong_length_span_ids_rejected(span: dict[str, Any], path: str, digits: int) -> None:
    message = _decode_error(_spans(span))
    (value,) = [v for v in _leaf_strings(span)]
    size = digits // 2
    assert message == (
        f"{path}: expected {digits} hex digits ({size} bytes), got {len(value)} characters"
    )


def _leaf_strings(document: Any) -> list[str]:
    if isinstance(document, str):
        return [document]
    if isinstance(document, dict):
        return [s for v in document.values() for s in _leaf_strings(v)]
    if isinstance(document, list):
        return [s for v in document for s in _leaf_strings(v)]
    return []


def test_example_message_from_the_brief() -> None:
    body = _body(
        {
            "resourceSpans": [
                {"scopeSpans": [{}, {"spans": [{}, {}, {}, {"traceId": TRACE_ID[:30]}]}]}
            ]
        }
    )
    assert _decode_error(body) == (
        "resourceSpans[0].scopeSpans[1].spans[3].traceId: expected 32 hex digits (16 bytes), "
        "got 30 characters"
    )


@pytest.mark.parametrize(
    ("record", "field", "digits"),
    [({"traceId": "abcd"}, "traceId", 32), ({"spanId": TRACE_ID}, "spanId", 16)],
)
def test_wrong_length_log_ids_rejected(record: dict[str, Any], field: str, digits: int) -> None:
    message = _decode_error(_log_records({}, record), decode_logs_json)
    assert message.startswith(
        f"resourceLogs[0].scopeLogs[0].logRecords[1].{field}: expected {digits} hex digits"
    )


def test_wrong_length_exemplar_id_rejected() -> None:
    document = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {"metrics": [{"sum": {"dataPoints": [{"exemplars": [{"spanId": "00"}]}]}}]}
                ]
            }
        ]
    }
    message = _decode_error(_body(document), decode_metrics_json)
    assert message == (
        "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].exemplars[0].spanId: "
        "expected 16 hex digits (8 bytes), got 2 characters"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "5b8efff798038103d269b633813fc6zz",
        "5b8efff798038103d269b633813fc6 c",
        123,
        True,
        ["5b"],
        {"a": 1},
        "W47/95gDgQPSabYzgT/GDA==",
    ],
)
def test_non_hex_trace_id_rejected(bad: Any) -> None:
    message = _decode_error(_spans({"traceId": bad}))
    assert message.startswith(f"{SPAN_PATH}.traceId: expected 32 hex digits (16 bytes), got ")


def test_base64_id_is_not_accepted_even_with_hex_length() -> None:
    # 32 characters of base64 alphabet that are not all hex digits
    message = _decode_error(_spans({"spanId": "W4700000000000+/"}))
    assert "non-hex characters" in message


# --------------------------------------------------------------------------- integers


@pytest.mark.parametrize("value", [1544712660000000000, "1544712660000000000"])
def test_int64_as_number_or_string(value: Any) -> None:
    assert _one_span({"startTimeUnixNano": value}).start_time_unix_nano == 1544712660000000000


def test_int64_beyond_2_53_preserved_exactly() -> None:
    span = _one_span({"startTimeUnixNano": "9007199254740993", "endTimeUnixNano": 2**64 - 1})
    assert span.start_time_unix_nano == 9007199254740993
    assert span.end_time_unix_nano == 2**64 - 1
    assert _attr_value({"intValue": "9007199254740993"}).int_value == 9007199254740993
    assert _attr_value({"intValue": "-9223372036854775808"}).int_value == -(2**63)
    assert _attr_value({"intValue": 9223372036854775807}).int_value == 2**63 - 1


def test_integral_float_accepted() -> None:
    assert _one_span({"startTimeUnixNano": 1e9}).start_time_unix_nano == 10**9
    assert _one_span({"droppedAttributesCount": 2.0}).dropped_attributes_count == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, "expected uint64, got non-integral number 1.5"),
        (True, "expected uint64 (JSON number or decimal string), got boolean true"),
        ("12abc", "expected uint64 (JSON number or decimal string), got string '12abc'"),
        ("1.0", "expected uint64 (JSON number or decimal string), got string '1.0'"),
        ("1_000", "expected uint64 (JSON number or decimal string), got string '1_000'"),
        (" 1", "expected uint64 (JSON number or decimal string), got string ' 1'"),
        ("+1", "expected uint64 (JSON number or decimal string), got string '+1'"),
        ("", "expected uint64 (JSON number or decimal string), got string ''"),
        ("-1", "expected uint64 in range [0, 18446744073709551615], got -1"),
        (-1, "expected uint64 in range [0, 18446744073709551615], got -1"),
        (
            "18446744073709551616",
            "expected uint64 in range [0, 18446744073709551615], got 18446744073709551616",
        ),
        ([1], "expected uint64 (JSON number or decimal string), got array"),
        ({}, "expected uint64 (JSON number or decimal string), got object"),
    ],
)
def test_bad_uint64_rejected(value: Any, expected: str) -> None:
    assert _decode_error(_spans({"startTimeUnixNano": value})) == (
        f"{SPAN_PATH}.startTimeUnixNano: {expected}"
    )


def test_number_literal_beyond_uint64_rejected() -> None:
    # orjson reads integer literals beyond 64 bits as floats; they are out of range anyway
    body = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"endTimeUnixNano":18446744073709551616}]}]}]}'
    )
    assert "expected uint64 in range" in _decode_error(body)
    body = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":'
        b'{"intValue":-9223372036854775809}}]}]}]}]}'
    )
    assert "expected int64 in range" in _decode_error(body)


@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809", 1.25, False])
def test_bad_int64_rejected(value: Any) -> None:
    message = _decode_error(_spans({"attributes": [{"key": "k", "value": {"intValue": value}}]}))
    assert message.startswith(f"{SPAN_PATH}.attributes[0].value.intValue: expected int64")


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("5", 5), (2**32 - 1, 2**32 - 1)])
def test_uint32_as_number_or_string(value: Any, expected: int) -> None:
    span = _one_span({"droppedAttributesCount": value, "flags": value})
    assert span.dropped_attributes_count == expected
    assert span.flags == expected


@pytest.mark.parametrize("value", [2**32, -1, "x", 0.5, None])
def test_bad_uint32_rejected(value: Any) -> None:
    if value is None:  # null means "not set"
        assert _one_span({"flags": value}).flags == 0
        return
    message = _decode_error(_spans({"flags": value}))
    assert message.startswith(f"{SPAN_PATH}.flags: expected uint32")


# --------------------------------------------------------------------------- enums


@pytest.mark.parametrize(
    ("kind", "expected"),
    [(2, 2), ("SPAN_KIND_SERVER", 2), ("3", 3), (0, 0), (42, 42), (-7, -7)],
)
def test_span_kind_as_int_or_name(kind: Any, expected: int) -> None:
    assert _one_span({"kind": kind}).kind == expected


def test_status_code_as_name() -> None:
    span = _one_span({"status": {"code": "STATUS_CODE_OK"}})
    assert span.status.code == Status.STATUS_CODE_OK


@pytest.mark.parametrize("kind", ["SERVER", "span_kind_server", True, 2**31, 1.5, []])
def test_bad_enum_rejected(kind: Any) -> None:
    message = _decode_error(_spans({"kind": kind}))
    assert message.startswith(f"{SPAN_PATH}.kind: expected SpanKind enum value")


# --------------------------------------------------------------------------- AnyValue


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.25, 1.25),
        (3, 3.0),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("2.5e3", 2500.0),
        (-0.0, -0.0),
    ],
)
def test_double_values(value: Any, expected: float) -> None:
    assert _attr_value({"doubleValue": value}).double_value == expected


def test_double_nan() -> None:
    assert math.isnan(_attr_value({"doubleValue": "NaN"}).double_value)


@pytest.mark.parametrize("value", ["nan", "inf", "1.2.3", "", True, {}, "1e999"])
def test_bad_double_rejected(value: Any) -> None:
    message = _decode_error(_spans({"attributes": [{"key": "k", "value": {"doubleValue": value}}]}))
    assert message.startswith(f"{SPAN_PATH}.attributes[0].value.doubleValue: expected double")


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(b"\x00\xff\xfe binary").decode(),
        base64.urlsafe_b64encode(b"\x00\xff\xfe binary").decode(),
        base64.b64encode(b"\x00\xff\xfe binary").decode().rstrip("="),
    ],
)
def test_bytes_value_base64(encoded: str) -> None:
    assert _attr_value({"bytesValue": encoded}).bytes_value == b"\x00\xff\xfe binary"


def test_empty_bytes_value() -> None:
    value = _attr_value({"bytesValue": ""})
    assert value.WhichOneof("value") == "bytes_value"
    assert value.bytes_value == b""


@pytest.mark.parametrize("encoded", ["not base64!", "QQ=Q", "Q", 12, "QUJD\nRA=="])
def test_bad_bytes_value_rejected(encoded: Any) -> None:
    attribute = {"key": "k", "value": {"bytesValue": encoded}}
    message = _decode_error(_spans({"attributes": [attribute]}))
    assert message.startswith(f"{SPAN_PATH}.attributes[0].value.bytesValue: expected base64")


def test_scalar_any_values() -> None:
    assert _attr_value({"stringValue": ""}).WhichOneof("value") == "string_value"
    assert _attr_value({"boolValue": False}).WhichOneof("value") == "bool_value"
    assert _attr_value({"intValue": 0}).WhichOneof("value") == "int_value"
    assert _attr_value({"intValue": "-12"}).int_value == -12


def test_empty_any_value() -> None:
    span = _one_span({"attributes": [{"key": "k", "value": {}}, {"key": "absent"}]})
    assert span.attributes[0].HasField("value")
    assert span.attributes[0].value.WhichOneof("value") is None
    assert not span.attributes[1].HasField("value")


def test_any_value_with_two_values_rejected() -> None:
    message = _decode_error(
        _spans({"attributes": [{"key": "k", "value": {"stringValue": "a", "intValue": 1}}]})
    )
    assert message == (
        f"{SPAN_PATH}.attributes[0].value: AnyValue sets both 'stringValue' and 'intValue'; "
        "at most one field of oneof 'value' may be set"
    )


def test_nested_arrays_and_kvlists() -> None:
    value = _attr_value(
        {
            "arrayValue": {
                "values": [
                    {"stringValue": "a"},
                    {"arrayValue": {"values": [{"intValue": "1"}, {"boolValue": True}, {}]}},
                    {
                        "kvlistValue": {
                            "values": [
                                {"key": "x", "value": {"doubleValue": 2.5}},
                                {
                                    "key": "y",
                                    "value": {
                                        "kvlistValue": {
                                            "values": [
                                                {"key": "z", "value": {"bytesValue": "AAE="}}
                                            ]
                                        }
                                    },
                                },
                                {"key": "empty", "value": {"arrayValue": {}}},
                            ]
                        }
                    },
                ]
            }
        }
    )
    outer = value.array_value.values
    assert outer[0].string_value == "a"
    inner = outer[1].array_value.values
    assert (inner[0].int_value, inner[1].bool_value) == (1, True)
    assert inner[2].WhichOneof("value") is None
    kvlist = outer[2].kvlist_value.values
    assert (kvlist[0].key, kvlist[0].value.double_value) == ("x", 2.5)
    assert kvlist[1].value.kvlist_value.values[0].value.bytes_value == b"\x00\x01"
    assert kvlist[2].value.WhichOneof("value") == "array_value"
    assert len(kvlist[2].value.array_value.values) == 0


def _nested(levels: int, kvlist_every: int = 0) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for level in range(levels):
        if kvlist_every and level % kvlist_every == 0:
            value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
        else:
            value = {"arrayValue": {"values": [value]}}
    return value


@pytest.mark.parametrize("kvlist_every", [0, 3])
def test_nesting_depth_limit(kvlist_every: int) -> None:
    limit = otlpjson.MAX_NESTING_DEPTH
    assert limit == 32
    value = _attr_value(_nested(limit, kvlist_every))
    for _ in range(limit):
        container = value.array_value if value.HasField("array_value") else value.kvlist_value
        inner = container.values[0]
        value = inner if isinstance(inner, AnyValue) else inner.value
    assert value.string_value == "leaf"

    message = _decode_error(
        _spans({"attributes": [{"key": "k", "value": _nested(limit + 1, kvlist_every)}]})
    )
    assert message.startswith(f"{SPAN_PATH}.attributes[0].value.")
    assert message.endswith(": arrayValue/kvlistValue nested deeper than 32 levels")


def _deep_body(levels: int) -> bytes:
    # written by hand: orjson.dumps stops at 255 levels
    value = '{"arrayValue":{"values":[' * levels + '{"stringValue":"x"}' + "]}}" * levels
    prefix = '{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":'
    return (prefix + value + "}]}]}]}]}").encode()


def test_very_deep_nesting_is_a_decode_error() -> None:
    assert _decode_error(_deep_body(300)).endswith("nested deeper than 32 levels")
    # orjson itself refuses JSON nested more than 1024 levels deep
    assert _decode_error(_deep_body(2000)).startswith("invalid JSON: ")


def test_log_body_nesting_limited_too() -> None:
    message = _decode_error(_log_records({"body": _nested(33)}), decode_logs_json)
    assert message.startswith("resourceLogs[0].scopeLogs[0].logRecords[0].body.arrayValue")


def test_attributes_keep_order_and_duplicates() -> None:
    attributes = [
        {"key": "b", "value": {"stringValue": "1"}},
        {"key": "a", "value": {"intValue": 2}},
        {"key": "b", "value": {"stringValue": "3"}},
        {"key": "", "value": {"boolValue": False}},
    ]
    span = _one_span({"attributes": attributes})
    assert [a.key for a in span.attributes] == ["b", "a", "b", ""]
    assert span.attributes[2].value.string_value == "3"


# --------------------------------------------------------------------------- names and unknowns


def test_unknown_fields_ignored_at_every_level() -> None:
    document = {
        "futureTopLevel": {"x": [1, 2]},
        "resourceSpans": [
            {
                "unknown": 1,
                "resource": {
                    "unknown": "x",
                    "attributes": [
                        {"key": "k", "value": {"stringValue": "v", "futureValue": 1}, "extra": None}
                    ],
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "s", "bogus": []},
                        "spans": [
                            {
                                "name": "n",
                                "notAField": {"deep": True},
                                "events": [{"name": "e", "x": 1}],
                                "links": [{"traceId": TRACE_ID, "y": "z"}],
                                "status": {"code": 1, "extra": "x"},
                                "TraceId": "not checked: field names are case-sensitive",
                            }
                        ],
                        "zzz": 0,
                    }
                ],
            }
        ],
    }
    request = decode_traces_json(_body(document))
    resource_spans = request.resource_spans[0]
    assert resource_spans.resource.attributes[0].value.string_value == "v"
    assert resource_spans.scope_spans[0].scope.name == "s"
    span = resource_spans.scope_spans[0].spans[0]
    assert span.name == "n"
    assert span.trace_id == b""
    assert span.events[0].name == "e"
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID)
    assert span.status.code == 1


def test_snake_case_names_accepted() -> None:
    document = {
        "resource_spans": [
            {
                "schema_url": "u",
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE_ID,
                                "span_id": SPAN_ID,
                                "parent_span_id": PARENT_ID,
                                "start_time_unix_nano": "5",
                                "end_time_unix_nano": 6,
                                "trace_state": "t",
                                "dropped_attributes_count": 1,
                                "dropped_events_count": 2,
                                "dropped_links_count": 3,
                                "attributes": [{"key": "k", "value": {"int_value": "1"}}],
                                "links": [{"trace_id": TRACE_ID, "span_id": SPAN_ID}],
                                "events": [{"time_unix_nano": "7"}],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    request = decode_traces_json(_body(document))
    assert request.resource_spans[0].schema_url == "u"
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (5, 6)
    assert (span.dropped_attributes_count, span.dropped_events_count) == (1, 2)
    assert span.dropped_links_count == 3
    assert span.attributes[0].value.int_value == 1
    assert span.links[0].span_id == bytes.fromhex(SPAN_ID)
    assert span.events[0].time_unix_nano == 7


def test_snake_case_key_is_named_in_error_path() -> None:
    message = _decode_error(
        _body({"resource_spans": [{"scope_spans": [{"spans": [{"span_id": "12"}]}]}]})
    )
    assert message.startswith("resource_spans[0].scope_spans[0].spans[0].span_id: ")


def test_same_field_under_both_names_rejected() -> None:
    message = _decode_error(_spans({"traceId": TRACE_ID, "trace_id": TRACE_ID}))
    assert message == f"{SPAN_PATH}: field 'traceId' given twice (as 'traceId' and 'trace_id')"


def test_null_means_not_set() -> None:
    span = _one_span(
        {"traceId": None, "name": None, "attributes": None, "status": None, "kind": None}
    )
    assert span == Span()
    assert not span.HasField("status")


def test_null_inside_arrays_rejected() -> None:
    message = _decode_error(_spans({"attributes": [None]}))
    assert message == f"{SPAN_PATH}.attributes[0]: expected KeyValue object, got null"
    document = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {"metrics": [{"histogram": {"dataPoints": [{"bucketCounts": ["1", None]}]}}]}
                ]
            }
        ]
    }
    message = _decode_error(_body(document), decode_metrics_json)
    assert message.endswith(
        ".dataPoints[0].bucketCounts[1]: expected a value, got null (null is not allowed in arrays)"
    )


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("body", [b"", b"{", b"{'a': 1}", b"[1,]", b"\xff\xfe", b"NaN"])
def test_invalid_json(body: bytes) -> None:
    assert _decode_error(body).startswith("invalid JSON: ")


@pytest.mark.parametrize(
    ("body", "got"),
    [
        (b"[]", "array"),
        (b"null", "null"),
        (b'"x"', "string 'x'"),
        (b"1", "number 1"),
        (b"true", "boolean true"),
    ],
)
def test_top_level_must_be_object(body: bytes, got: str) -> None:
    for decode in (decode_traces_json, decode_logs_json, decode_metrics_json):
        assert _decode_error(body, decode) == (
            f"expected a JSON object at the top level, got {got}"
        )


def test_empty_object_is_an_empty_request() -> None:
    assert decode_traces_json(b"{}") == ExportTraceServiceRequest()
    assert decode_logs_json(b"{}").resource_logs == []
    assert len(decode_metrics_json(b" { } ").resource_metrics) == 0


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"resourceSpans": {}}, "resourceSpans: expected array, got object"),
        ({"resourceSpans": "x"}, "resourceSpans: expected array, got string 'x'"),
        (
            {"resourceSpans": ["x"]},
            "resourceSpans[0]: expected ResourceSpans object, got string 'x'",
        ),
        (
            {"resourceSpans": [{"resource": []}]},
            "resourceSpans[0].resource: expected Resource object, got array",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]},
            f"{SPAN_PATH}.name: expected string, got number 5",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"status": "ok"}]}]}]},
            f"{SPAN_PATH}.status: expected Status object, got string 'ok'",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": {"k": "v"}}]}]}]},
            f"{SPAN_PATH}.attributes: expected array, got object",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": 1}]}]}]}]},
            f"{SPAN_PATH}.attributes[0].key: expected string, got number 1",
        ),
        (
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": "v"}]}]}]}
                ]
            },
            f"{SPAN_PATH}.attributes[0].value: expected AnyValue object, got string 'v'",
        ),
        (
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {"attributes": [{"key": "k", "value": {"boolValue": "true"}}]}
                                ]
                            }
                        ]
                    }
                ]
            },
            f"{SPAN_PATH}.attributes[0].value.boolValue: expected boolean, got string 'true'",
        ),
        (
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {"spans": [{"attributes": [{"key": "k", "value": {"stringValue": 1}}]}]}
                        ]
                    }
                ]
            },
            f"{SPAN_PATH}.attributes[0].value.stringValue: expected string, got number 1",
        ),
        (
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {"attributes": [{"key": "k", "value": {"arrayValue": [1]}}]}
                                ]
                            }
                        ]
                    }
                ]
            },
            f"{SPAN_PATH}.attributes[0].value.arrayValue: expected ArrayValue object, got array",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"events": [{"name": ["x"]}]}]}]}]},
            f"{SPAN_PATH}.events[0].name: expected string, got array",
        ),
    ],
)
def test_wrong_types_rejected(document: dict[str, Any], expected: str) -> None:
    assert _decode_error(_body(document)) == expected


def test_long_strings_are_shortened_in_messages() -> None:
    message = _decode_error(_spans({"startTimeUnixNano": "9" * 5000}))
    assert message == (
        f"{SPAN_PATH}.startTimeUnixNano: expected uint64 in range [0, 18446744073709551615], "
        f"got string '{'9' * 37}...'"
    )
    message = _decode_error(_spans({"name": "n", "endTimeUnixNano": "x" * 100}))
    assert message == (
        f"{SPAN_PATH}.endTimeUnixNano: expected uint64 (JSON number or decimal string), "
        f"got string '{'x' * 37}...'"
    )


def test_enum_messages() -> None:
    assert _decode_error(_spans({"kind": "SERVER"})) == (
        f"{SPAN_PATH}.kind: expected SpanKind enum value (integer or SPAN_KIND_UNSPECIFIED, "
        "SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, "
        "SPAN_KIND_CONSUMER), got string 'SERVER'"
    )
    message = _decode_error(_log_records({"severityNumber": "WARN"}), decode_logs_json)
    assert message == (
        "resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber: expected SeverityNumber "
        "enum value (integer or a SeverityNumber name), got string 'WARN'"
    )


def test_accepts_bytearray_and_memoryview() -> None:
    body = _body(FULL_TRACES)
    expected = decode_traces_json(body)
    assert decode_traces_json(bytearray(body)) == expected  # type: ignore[arg-type]
    assert decode_traces_json(memoryview(body)) == expected  # type: ignore[arg-type]


# --------------------------------------------------------------------------- generic machinery


def test_map_fields_supported_by_the_generic_decoder() -> None:
    # OTLP has no map fields today; google.protobuf.Struct (decoded here as a plain
    # message, not with its special JSON form) exercises the map code path.
    from google.protobuf.struct_pb2 import Struct

    plan = otlpjson._plan(Struct.DESCRIPTOR, {})
    kwargs = otlpjson._decode_message(
        {
            "fields": {
                "a": {"stringValue": "x"},
                "b": {"listValue": {"values": [{"numberValue": "1.5"}, {"boolValue": True}]}},
            }
        },
        plan,
        0,
    )
    struct = Struct(**kwargs)
    assert struct["a"] == "x"
    values = struct.fields["b"].list_value.values
    assert (values[0].number_value, values[1].bool_value) == (1.5, True)
    with pytest.raises(otlpjson._Error) as info:
        otlpjson._decode_message({"fields": {"a": {"numberValue": "x"}}}, plan, 0)
    assert info.value.path == ["numberValue", "['a']", "fields"]


# --------------------------------------------------------------------------- round trip

_HEX_FIELDS = {"trace_id", "span_id", "parent_span_id"}
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_SINT64,
}


def _encode(message: Message, style: dict[str, bool]) -> dict[str, Any]:
    """A small independent OTLP/JSON encoder: hex ids, 64-bit ints as strings."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        key = field.name if style["snake"] else field.json_name
        if field.is_repeated:
            out[key] = [_encode_value(field, item, style) for item in value]
        else:
            out[key] = _encode_value(field, value, style)
    return out


def _encode_value(field: FieldDescriptor, value: Any, style: dict[str, bool]) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _encode(value, style)
    if field.type == FieldDescriptor.TYPE_BYTES:
        if field.name in _HEX_FIELDS:
            text = value.hex()
            return text.upper() if style["upper"] else text
        return base64.b64encode(value).decode()
    if field.type in _INT64_TYPES:
        return str(value) if style["int_strings"] else value
    if field.type == FieldDescriptor.TYPE_DOUBLE and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value  # string, bool, 32-bit ints, enums (as integers), finite doubles


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_i64 = st.integers(-(2**63), 2**63 - 1)
_enum = st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1))


def _id(size: int) -> st.SearchStrategy[bytes]:
    return st.one_of(st.just(b""), st.binary(min_size=size, max_size=size))


_scalar_values = st.one_of(
    st.just({}),
    _text.map(lambda v: {"string_value": v}),
    st.booleans().map(lambda v: {"bool_value": v}),
    _i64.map(lambda v: {"int_value": v}),
    st.floats(allow_nan=False).map(lambda v: {"double_value": v}),
    st.binary(max_size=10).map(lambda v: {"bytes_value": v}),
)
_any_values = st.recursive(
    _scalar_values,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda vs: {"array_value": {"values": vs}}),
        st.lists(st.tuples(_text, children), max_size=3).map(
            lambda kvs: {"kvlist_value": {"values": [{"key": k, "value": v} for k, v in kvs]}}
        ),
    ),
    max_leaves=8,
)
_attributes = st.lists(
    st.builds(lambda k, v: {"key": k, "value": v}, _text, _any_values), max_size=4
)
_events = st.fixed_dictionaries(
    {},
    optional={
        "time_unix_nano": _u64,
        "name": _text,
        "attributes": _attributes,
        "dropped_attributes_count": _u32,
    },
)
_links = st.fixed_dictionaries(
    {},
    optional={
        "trace_id": _id(16),
        "span_id": _id(8),
        "trace_state": _text,
        "attributes": _attributes,
        "dropped_attributes_count": _u32,
        "flags": _u32,
    },
)
_spans_strategy = st.fixed_dictionaries(
    {"trace_id": _id(16), "span_id": _id(8)},
    optional={
        "trace_state": _text,
        "parent_span_id": _id(8),
        "flags": _u32,
        "name": _text,
        "kind": _enum,
        "start_time_unix_nano": _u64,
        "end_time_unix_nano": _u64,
        "attributes": _attributes,
        "dropped_attributes_count": _u32,
        "events": st.lists(_events, max_size=2),
        "dropped_events_count": _u32,
        "links": st.lists(_links, max_size=2),
        "dropped_links_count": _u32,
        "status": st.fixed_dictionaries({}, optional={"message": _text, "code": _enum}),
    },
)
_scope = st.fixed_dictionaries(
    {},
    optional={
        "name": _text,
        "version": _text,
        "attributes": _attributes,
        "dropped_attributes_count": _u32,
    },
)
_requests = st.builds(
    lambda rs: ExportTraceServiceRequest(resource_spans=rs),
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "resource": st.fixed_dictionaries(
                    {}, optional={"attributes": _attributes, "dropped_attributes_count": _u32}
                ),
                "schema_url": _text,
                "scope_spans": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "scope": _scope,
                            "schema_url": _text,
                            "spans": st.lists(_spans_strategy, max_size=3),
                        },
                    ),
                    max_size=2,
                ),
            },
        ),
        max_size=2,
    ),
)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    request=_requests,
    style=st.fixed_dictionaries(
        {"snake": st.booleans(), "upper": st.booleans(), "int_strings": st.booleans()}
    ),
)
def test_round_trip_through_independent_encoder(
    request: ExportTraceServiceRequest, style: dict[str, bool]
) -> None:
    body = orjson.dumps(_encode(request, style))
    assert decode_traces_json(body) == request
