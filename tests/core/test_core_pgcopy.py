"""The core's binary COPY stream: the format PostgreSQL reads, and clear errors for rows
that do not fit it (the contract suite appends through it to a real PostgreSQL)."""

from __future__ import annotations

import struct

import pytest

from otaudit._core import pg_copy_binary

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def test_a_stream_is_signature_rows_and_trailer() -> None:
    out = pg_copy_binary([(1, b"\x00\x01", "é", None, '{"a":"b"}', 7)], "qbtthi")
    assert out.startswith(SIGNATURE + bytes(8))
    assert out.endswith(b"\xff\xff")
    body = out[len(SIGNATURE) + 8 : -2]
    assert body[:2] == struct.pack(">h", 6)
    assert struct.pack(">iq", 8, 1) in body
    assert struct.pack(">i", 2) + b"\x00\x01" in body
    assert struct.pack(">i", 2) + "é".encode() in body
    assert struct.pack(">i", -1) in body
    assert struct.pack(">ii", 1, 1) + b"a" + struct.pack(">i", 1) + b"b" in body
    assert body.endswith(struct.pack(">ii", 4, 7))


@pytest.mark.parametrize(
    ("row", "kinds", "error", "message"),
    [
        ((1,), "qq", ValueError, "row 0 has 1 values, expected 2"),
        (("1",), "q", TypeError, "row 0:"),
        ((2**63,), "q", TypeError, "row 0:"),
        (('{"a": 1}',), "h", ValueError, "row 0: an hstore value is not flat"),
        (("[]",), "h", ValueError, "row 0: an hstore value is not flat"),
        ((1,), "x", TypeError, "unknown field kind"),
    ],
)
def test_a_row_that_does_not_fit_is_refused_with_its_reason(
    row: tuple[object, ...], kinds: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        pg_copy_binary([row], kinds)
