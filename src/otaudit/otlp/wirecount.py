"""Count the records of an OTLP protobuf export request from its wire bytes, without
decoding it, stopping as soon as the count passes a limit.

Traces and logs have the same shape on the wire: the request's field 1 holds the
resource groups (``resource_spans`` / ``resource_logs``), a group's field 2 its scope
groups, and a scope group's field 2 its records (``spans`` / ``log_records``). Counting
the field-2 entries two levels down is a walk over tags and lengths, so a request of
500,000 spans is refused after reading the first 20,001 span headers instead of after a
full parse. Bytes that are not valid protobuf stop the walk: the decoder that runs next
gives the precise error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

_LEN: Final = 2


class _Malformed(Exception):
    pass


def _varint(data: bytes, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= end or shift > 63:
            raise _Malformed
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _delimited(data: bytes, at: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field in ``data[at:end]``,
    skipping the others; ``_Malformed`` for bytes that are not protobuf."""
    while at < end:
        tag, at = _varint(data, at, end)
        kind = tag & 7
        if kind == 0:
            _, at = _varint(data, at, end)
        elif kind == 1:
            at += 8
        elif kind == 5:
            at += 4
        elif kind == _LEN:
            size, at = _varint(data, at, end)
            if at + size <= end:
                yield tag >> 3, at, at + size
            at += size
        else:
            raise _Malformed
        if at > end:
            raise _Malformed


def _fields(data: bytes, at: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    """The (start, end) of each length-delimited field ``number`` in ``data[at:end]``."""
    return ((start, stop) for n, start, stop in _delimited(data, at, end) if n == number)


def records_over(data: bytes, limit: int) -> int | None:
    """The number of spans or log records in a protobuf export request if it is more
    than ``limit`` (counted up to ``limit + 1`` and then stopped), else None; None too for
    bytes that are not a well-formed request (the decoder reports those)."""
    total = 0
    try:
        for start, end in _fields(data, 0, len(data), 1):
            for s_start, s_end in _fields(data, start, end, 2):
                for _ in _fields(data, s_start, s_end, 2):
                    total += 1
                    if total > limit:
                        return total
    except _Malformed:
        return None
    return None
