"""OTLP/JSON request bodies decoded into the official ``opentelemetry-proto`` messages.

OTLP/JSON is the JSON Mapping of Protobuf with the deviations listed in the OTLP
specification, "JSON Protobuf Encoding"
(https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding):

* ``traceId`` and ``spanId`` (and ``parentSpanId``) are case-insensitive
  hex strings, not base64 as in the plain Protobuf JSON mapping;
* enum values are integers (names are accepted here too, for leniency);
* field names are lowerCamelCase; the original proto names are accepted as well,
  like every Protobuf JSON parser does;
* receivers MUST ignore unknown fields.

Everything else follows the Protobuf JSON mapping
(https://protobuf.dev/programming-guides/json/): 64-bit integers may be JSON
numbers or decimal strings, doubles may be the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``, other ``bytes`` fields are base64, ``null``
means "field not set".

Protobuf's own ``json_format`` is deliberately not used: it reads ids as base64.
Instead, one descriptor-driven decoder walks the message descriptors of
``opentelemetry-proto``, so new fields in a newer proto are picked up without
code changes. The decoder builds nested keyword dictionaries and hands them to
the generated message constructor in one go (done in C by upb), which is much
faster than setting fields one by one.

Errors are :class:`otaudit.errors.DecodeError` with the JSON path of the
offending value, e.g.
``resourceSpans[0].scopeSpans[1].spans[3].traceId: expected 32 hex digits
(16 bytes), got 30 characters``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otaudit.errors import DecodeError

__all__ = [
    "MAX_NESTING_DEPTH",
    "decode_logs_json",
    "decode_metrics_json",
    "decode_traces_json",
]

#: Maximum nesting of ``arrayValue`` / ``kvlistValue`` containers inside one
#: attribute value or log body. A scalar inside 32 nested arrays is accepted,
#: a 33rd level is rejected.
MAX_NESTING_DEPTH = 32

# Messages whose every level counts against MAX_NESTING_DEPTH.
_NESTING_MESSAGES = frozenset(
    {
        "opentelemetry.proto.common.v1.ArrayValue",
        "opentelemetry.proto.common.v1.KeyValueList",
    }
)

_KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"

# Fast path for the overwhelmingly common attribute shape
# ``{"key": "...", "value": {"stringValue": "..."}}``: AnyValue JSON name ->
# (proto name, JSON type that needs no conversion). Anything else takes the
# generic path, which produces the same result.
_FAST_ANY_VALUES: dict[str, tuple[str, type]] = {
    "stringValue": ("string_value", str),
    "boolValue": ("bool_value", bool),
    "doubleValue": ("double_value", float),
}

# bytes fields that OTLP/JSON encodes as hex instead of base64, with their
# required length in bytes (spec: "traceId and spanId ... hex-encoded strings").
_HEX_ID_FIELDS = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}

_INT_RE = re.compile(r"-?[0-9]+")
_FLOAT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_URLSAFE_TO_STD = str.maketrans("-_", "+/")
_FLOAT32_MAX = 3.4028234663852886e38

_Convert = Callable[[Any], Any]


class _Error(Exception):
    """Internal error; ``path`` collects JSON path segments innermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _describe(value: object) -> str:
    """A short description of a JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean true" if value else "boolean false"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # pragma: no cover - orjson yields only the above


# --------------------------------------------------------------------------- scalars


def _int_converter(lo: int, hi: int, what: str) -> _Convert:
    def convert(value: Any) -> int:
        kind = type(value)
        if kind is int:
            if lo <= value <= hi:
                return value  # type: ignore[no-any-return]
            number: int = value
        elif kind is str:
            if value.isdigit() and value.isascii() and len(value) <= 20:
                number = int(value)  # common case: a plain non-negative decimal
            elif _INT_RE.fullmatch(value) is None:
                raise _Error(
                    f"expected {what} (JSON number or decimal string), got {_describe(value)}"
                )
            elif len(value) > 40:  # far out of range; also keeps int() cheap
                raise _Error(f"expected {what} in range [{lo}, {hi}], got {_describe(value)}")
            else:
                number = int(value)
        elif kind is float:
            if not value.is_integer():
                raise _Error(f"expected {what}, got non-integral {_describe(value)}")
            # orjson turns integer literals beyond 64 bits into floats; a float at
            # the int64 minimum can only come from such an out-of-range literal.
            if lo < 0 and value <= lo:
                raise _Error(f"expected {what} in range [{lo}, {hi}], got {_describe(value)}")
            number = int(value)
        else:
            raise _Error(f"expected {what} (JSON number or decimal string), got {_describe(value)}")
        if number < lo or number > hi:
            raise _Error(f"expected {what} in range [{lo}, {hi}], got {number}")
        return number

    return convert


def _float_converter(single: bool) -> _Convert:
    what = "float" if single else "double"

    def convert(value: Any) -> float:
        kind = type(value)
        if kind is float:
            number: float = value
        elif kind is int:
            number = float(value)
        elif kind is str:
            special = _SPECIAL_FLOATS.get(value)
            if special is not None:
                return special
            if _FLOAT_RE.fullmatch(value) is None:
                raise _Error(
                    f'expected {what} (JSON number, numeric string, "NaN", '
                    f'"Infinity" or "-Infinity"), got {_describe(value)}'
                )
            number = float(value)
        else:
            raise _Error(
                f'expected {what} (JSON number, "NaN", "Infinity" or '
                f'"-Infinity"), got {_describe(value)}'
            )
        if math.isinf(number) or (single and abs(number) > _FLOAT32_MAX):
            raise _Error(f"expected {what} in range, got {_describe(value)}")
        return number

    return convert


def _convert_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _Error(f"expected boolean, got {_describe(value)}")
    return value


def _convert_string(value: Any) -> str:
    if type(value) is not str:
        raise _Error(f"expected string, got {_describe(value)}")
    return value


def _convert_base64(value: Any) -> bytes:
    if type(value) is not str:
        raise _Error(f"expected base64 string, got {_describe(value)}")
    text: str = value
    if "-" in text or "_" in text:
        text = text.translate(_URLSAFE_TO_STD)
    missing = -len(text) % 4
    if missing:
        text += "=" * missing
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Error(f"expected base64 string, got {_describe(value)}") from None


def _hex_id_converter(size: int) -> _Convert:
    digits = 2 * size
    expected = f"expected {digits} hex digits ({size} bytes)"

    def convert(value: Any) -> bytes:
        if type(value) is not str:
            raise _Error(f"{expected}, got {_describe(value)}")
        if not value:
            return b""  # the empty string means "no id"
        if len(value) != digits:
            raise _Error(f"{expected}, got {len(value)} characters")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != size:  # fromhex skips whitespace, so check what came out
            raise _Error(f"{expected}, got non-hex characters in {_describe(value)}")
        return raw

    return convert


def _enum_converter(enum: EnumDescriptor) -> _Convert:
    by_name = {value.name: value.number for value in enum.values}
    names = ", ".join(by_name) if len(by_name) <= 8 else f"a {enum.name} name"
    as_int = _int_converter(-(2**31), 2**31 - 1, f"{enum.name} enum value")

    def convert(value: Any) -> int:
        kind = type(value)
        if kind is int and -(2**31) <= value < 2**31:
            return value  # type: ignore[no-any-return]
        if kind is str:
            number = by_name.get(value)
            if number is not None:
                return number
            if _INT_RE.fullmatch(value) is None:
                raise _Error(
                    f"expected {enum.name} enum value (integer or {names}), got {_describe(value)}"
                )
        result: int = as_int(value)
        return result  # unknown numbers are kept: proto3 enums are open

    return convert


_U32 = 2**32 - 1
_U64 = 2**64 - 1
_I32 = (-(2**31), 2**31 - 1)
_I64 = (-(2**63), 2**63 - 1)

_SCALARS: dict[int, _Convert] = {
    FieldDescriptor.TYPE_DOUBLE: _float_converter(single=False),
    FieldDescriptor.TYPE_FLOAT: _float_converter(single=True),
    FieldDescriptor.TYPE_INT64: _int_converter(*_I64, "int64"),
    FieldDescriptor.TYPE_SINT64: _int_converter(*_I64, "int64"),
    FieldDescriptor.TYPE_SFIXED64: _int_converter(*_I64, "int64"),
    FieldDescriptor.TYPE_UINT64: _int_converter(0, _U64, "uint64"),
    FieldDescriptor.TYPE_FIXED64: _int_converter(0, _U64, "uint64"),
    FieldDescriptor.TYPE_INT32: _int_converter(*_I32, "int32"),
    FieldDescriptor.TYPE_SINT32: _int_converter(*_I32, "int32"),
    FieldDescriptor.TYPE_SFIXED32: _int_converter(*_I32, "int32"),
    FieldDescriptor.TYPE_UINT32: _int_converter(0, _U32, "uint32"),
    FieldDescriptor.TYPE_FIXED32: _int_converter(0, _U32, "uint32"),
    FieldDescriptor.TYPE_BOOL: _convert_bool,
    FieldDescriptor.TYPE_STRING: _convert_string,
    FieldDescriptor.TYPE_BYTES: _convert_base64,
}


# --------------------------------------------------------------------------- plans


def _is_repeated(field: FieldDescriptor) -> bool:
    # ``is_repeated`` appeared in protobuf 6; older releases only have ``label``.
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:  # pragma: no cover - old protobuf
        return bool(getattr(field, "label") == FieldDescriptor.LABEL_REPEATED)  # noqa: B009
    return bool(repeated)


class _Field:
    """How to decode one field of a message."""

    __slots__ = (
        "json_name",
        "map_key",
        "map_value",
        "message",
        "name",
        "oneof",
        "repeated",
        "scalar",
    )

    def __init__(self, field: FieldDescriptor, plans: dict[str, _Message]) -> None:
        self.name: str = field.name
        self.json_name: str = field.json_name
        self.repeated: bool = _is_repeated(field)
        oneof = field.containing_oneof
        # proto3 ``optional`` fields live in synthetic one-member oneofs; only real
        # oneofs can be over-specified.
        self.oneof: str | None = oneof.name if oneof is not None and len(oneof.fields) > 1 else None
        self.scalar: _Convert | None = None
        self.message: _Message | None = None
        self.map_key: _Convert | None = None
        self.map_value: _Field | None = None
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            assert entry is not None
            if entry.GetOptions().map_entry:
                self.map_key = _map_key_converter(entry.fields_by_name["key"])
                self.map_value = _Field(entry.fields_by_name["value"], plans)
            else:
                self.message = _plan(entry, plans)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            self.scalar = _enum_converter(field.enum_type)
        elif field.type == FieldDescriptor.TYPE_BYTES and field.name in _HEX_ID_FIELDS:
            self.scalar = _hex_id_converter(_HEX_ID_FIELDS[field.name])
        elif field.type in _SCALARS:
            self.scalar = _SCALARS[field.type]
        else:  # pragma: no cover - groups do not exist in proto3
            raise TypeError(f"unsupported field type {field.type} for {field.full_name}")


class _Message:
    """How to decode one message type: its fields under both JSON and proto names."""

    __slots__ = ("fields", "is_key_value", "name", "nests")

    def __init__(self, descriptor: Descriptor) -> None:
        self.name: str = descriptor.name
        self.nests: bool = descriptor.full_name in _NESTING_MESSAGES
        self.is_key_value: bool = descriptor.full_name == _KEY_VALUE
        self.fields: dict[str, _Field] = {}


def _plan(descriptor: Descriptor, plans: dict[str, _Message]) -> _Message:
    plan = plans.get(descriptor.full_name)
    if plan is None:
        plan = plans[descriptor.full_name] = _Message(descriptor)  # before recursing
        for field in descriptor.fields:
            decoded = _Field(field, plans)
            plan.fields[field.json_name] = decoded
            plan.fields[field.name] = decoded
    return plan


def _map_key_converter(field: FieldDescriptor) -> _Convert:
    if field.type == FieldDescriptor.TYPE_STRING:
        return _convert_string
    if field.type == FieldDescriptor.TYPE_BOOL:

        def convert_bool_key(value: Any) -> bool:
            if value in ("true", "false"):
                return bool(value == "true")
            raise _Error(f'expected map key "true" or "false", got {_describe(value)}')

        return convert_bool_key
    return _SCALARS[field.type]  # integer keys: decimal strings


# --------------------------------------------------------------------------- decoding


def _decode_message(value: Any, plan: _Message, depth: int) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Error(f"expected {plan.name} object, got {_describe(value)}")
    if plan.nests:
        depth += 1
        if depth > MAX_NESTING_DEPTH:
            raise _Error(f"arrayValue/kvlistValue nested deeper than {MAX_NESTING_DEPTH} levels")
    fields = plan.fields
    out: dict[str, Any] = {}
    oneofs: dict[str, str] | None = None
    for key, item in value.items():
        field = fields.get(key)
        if field is None or item is None:
            continue  # unknown fields MUST be ignored; null means "not set"
        name = field.name
        if name in out:
            raise _Error(
                f"field {field.json_name!r} given twice (as {field.json_name!r} and {field.name!r})"
            )
        if field.oneof is not None:
            if oneofs is None:
                oneofs = {}
            other = oneofs.get(field.oneof)
            if other is not None:
                raise _Error(
                    f"{plan.name} sets both {other!r} and {key!r}; at most one field "
                    f"of oneof {field.oneof!r} may be set"
                )
            oneofs[field.oneof] = key
        try:
            scalar = field.scalar
            if scalar is not None and not field.repeated:
                out[name] = scalar(item)
            elif field.repeated:
                out[name] = _decode_repeated(item, field, depth)
            else:
                out[name] = _decode_message(item, field.message, depth)  # type: ignore[arg-type]
        except _Error as error:
            error.path.append(key)
            raise
    return out


def _decode_repeated(value: Any, field: _Field, depth: int) -> Any:
    if field.map_value is not None:
        return _decode_map(value, field, depth)
    if type(value) is not list:
        raise _Error(f"expected array, got {_describe(value)}")
    message = field.message
    if message is not None and message.is_key_value:
        return _decode_key_values(value, message, depth)
    index = 0
    try:
        if message is not None:
            decoded = []
            for index, item in enumerate(value):  # noqa: B007 - used in the error path
                decoded.append(_decode_message(item, message, depth))
            return decoded
        convert: _Convert = field.scalar  # type: ignore[assignment]
        result = []
        for index, item in enumerate(value):  # noqa: B007
            if item is None:
                raise _Error("expected a value, got null (null is not allowed in arrays)")
            result.append(convert(item))
        return result
    except _Error as error:
        error.path.append(f"[{index}]")
        raise


def _decode_key_values(value: list[Any], plan: _Message, depth: int) -> list[dict[str, Any]]:
    """Decode an attribute list; plain scalar attributes skip the generic walk.

    The fast path only takes values the generic path would accept unchanged and
    builds the same keyword dictionaries; everything else goes the generic way.
    """
    fast_values = _FAST_ANY_VALUES
    decoded: list[dict[str, Any]] = []
    append = decoded.append
    index = 0
    try:
        for index, item in enumerate(value):  # noqa: B007 - used in the error path
            if type(item) is dict and len(item) == 2:
                key = item.get("key")
                any_value = item.get("value")
                if type(key) is str and type(any_value) is dict and len(any_value) == 1:
                    ((json_name, scalar),) = any_value.items()
                    fast = fast_values.get(json_name)
                    if fast is not None:
                        if type(scalar) is fast[1]:
                            append({"key": key, "value": {fast[0]: scalar}})
                            continue
                    elif json_name == "intValue":
                        kind = type(scalar)
                        if kind is str:
                            # up to 18 ASCII digits always fits in int64
                            if len(scalar) <= 18 and scalar.isascii() and scalar.isdigit():
                                append({"key": key, "value": {"int_value": int(scalar)}})
                                continue
                        elif kind is int and _I64[0] <= scalar <= _I64[1]:
                            append({"key": key, "value": {"int_value": scalar}})
                            continue
            append(_decode_message(item, plan, depth))
    except _Error as error:
        error.path.append(f"[{index}]")
        raise
    return decoded


def _decode_map(value: Any, field: _Field, depth: int) -> dict[Any, Any]:
    if type(value) is not dict:
        raise _Error(f"expected object (map), got {_describe(value)}")
    key_convert: _Convert = field.map_key  # type: ignore[assignment]
    entry: _Field = field.map_value  # type: ignore[assignment]
    result: dict[Any, Any] = {}
    for key, item in value.items():
        try:
            if item is None:
                raise _Error("expected a value, got null (null is not allowed in maps)")
            if entry.message is not None:
                result[key_convert(key)] = _decode_message(item, entry.message, depth)
            else:
                result[key_convert(key)] = entry.scalar(item)  # type: ignore[misc]
        except _Error as error:
            error.path.append(f"[{key!r}]")
            raise
    return result


def _format_path(segments: list[str]) -> str:
    parts: list[str] = []
    for segment in reversed(segments):
        if parts and not segment.startswith("["):
            parts.append(".")
        parts.append(segment)
    return "".join(parts)


def _decode(body: bytes, cls: Any, plan: _Message) -> Any:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise DecodeError(f"invalid JSON: {error}") from None
    if type(document) is not dict:
        raise DecodeError(f"expected a JSON object at the top level, got {_describe(document)}")
    try:
        kwargs = _decode_message(document, plan, 0)
    except _Error as error:
        if error.path:
            raise DecodeError(f"{_format_path(error.path)}: {error.message}") from None
        raise DecodeError(error.message) from None
    except RecursionError:  # pragma: no cover - defensive; nesting is bounded above
        raise DecodeError("OTLP/JSON request nested too deeply") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:  # pragma: no cover - converters pre-validate
        raise DecodeError(f"invalid {plan.name}: {error}") from None


_PLANS: dict[str, _Message] = {}
_TRACES_PLAN = _plan(ExportTraceServiceRequest.DESCRIPTOR, _PLANS)
_LOGS_PLAN = _plan(ExportLogsServiceRequest.DESCRIPTOR, _PLANS)
_METRICS_PLAN = _plan(ExportMetricsServiceRequest.DESCRIPTOR, _PLANS)


def decode_traces_json(body: bytes) -> ExportTraceServiceRequest:
    """Decode an OTLP/JSON ``/v1/traces`` request body.

    Follows the OTLP specification's JSON Protobuf Encoding
    (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): hex
    trace/span ids, integer enums, lowerCamelCase (or proto) field names,
    unknown fields ignored. Raises :class:`~otaudit.errors.DecodeError` naming
    the JSON path of the first invalid value.
    """
    result: ExportTraceServiceRequest = _decode(body, ExportTraceServiceRequest, _TRACES_PLAN)
    return result


def decode_logs_json(body: bytes) -> ExportLogsServiceRequest:
    """Decode an OTLP/JSON ``/v1/logs`` request body.

    Same rules as :func:`decode_traces_json` (OTLP specification, JSON Protobuf
    Encoding, https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding);
    log record ``traceId``/``spanId`` are hex and ``body`` is an ``AnyValue``.
    Raises :class:`~otaudit.errors.DecodeError` on invalid input.
    """
    result: ExportLogsServiceRequest = _decode(body, ExportLogsServiceRequest, _LOGS_PLAN)
    return result


def decode_metrics_json(body: bytes) -> ExportMetricsServiceRequest:
    """Decode an OTLP/JSON ``/v1/metrics`` request body.

    Same rules as :func:`decode_traces_json` (OTLP specification, JSON Protobuf
    Encoding, https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding);
    every metric type and data point field is decoded, exemplar ids are hex.
    Raises :class:`~otaudit.errors.DecodeError` on invalid input.
    """
    result: ExportMetricsServiceRequest = _decode(body, ExportMetricsServiceRequest, _METRICS_PLAN)
    return result
