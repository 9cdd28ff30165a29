"""Fuzzing the gzip decoder: any body inflates to what ``gzip.decompress`` makes of it, within
the output limit, or is refused with a DecodeError; nothing else.

``make test`` runs a bounded number of examples (profile ``default``);
``make fuzz`` runs the same properties with many more (profile ``fuzz``).
Whatever a run finds is fixed and kept below as an ``@example``.
"""

from __future__ import annotations

import gzip
import zlib

from hypothesis import example, given
from hypothesis import strategies as st

from mutation import mutate
from otaudit.errors import DecodeError, PayloadTooLarge
from otaudit.otlp.body import MAX_GZIP_MEMBERS, gunzip

MAX_BYTES = 4096


def _reference(body: bytes) -> bytes | None:
    """What the standard library makes of ``body`` (None: it refuses it)."""
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error, ValueError, IndexError):
        return None


def _check(body: bytes) -> None:
    """``gunzip`` returns exactly the reference's output or refuses; never more leniently."""
    try:
        out = gunzip(body, MAX_BYTES)
    except PayloadTooLarge:
        reference = _reference(body)
        assert reference is None or len(reference) > MAX_BYTES
        return
    except DecodeError:
        return  # stricter than the reference is allowed (trailing zeros, header CRC, members)
    assert len(out) <= MAX_BYTES
    assert out == _reference(body)


MEMBERS = st.lists(
    st.tuples(st.binary(max_size=1500), st.integers(0, 9), st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=6,
)
EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                 max_size=6)  # fmt: skip


def _members(members: list[tuple[bytes, int, int]]) -> bytes:
    return b"".join(gzip.compress(data, level, mtime=mtime) for data, level, mtime in members)


@given(body=st.binary(max_size=4096))
@example(body=b"\x1f\x8b")  # a magic number and nothing else
@example(body=b"\x1f\x8b\x08\x00" + bytes(6))  # a header without a deflate stream
def test_random_bodies(body: bytes) -> None:
    _check(body)


@given(members=MEMBERS)
def test_concatenated_members(members: list[tuple[bytes, int, int]]) -> None:
    body = _members(members)
    expected = b"".join(data for data, _, _ in members)
    if len(expected) > MAX_BYTES:
        try:
            gunzip(body, MAX_BYTES)
        except PayloadTooLarge:
            return
        raise AssertionError("output over the limit was returned")
    assert gunzip(body, MAX_BYTES) == expected


@given(members=MEMBERS, edits=EDITS)
@example(members=[(b"x" * 100, 6, 0)], edits=[(2, 1 << 16, 0)])  # a zero byte after the trailer
def test_mutated_members(members: list[tuple[bytes, int, int]],
                         edits: list[tuple[int, int, int]]) -> None:  # fmt: skip
    _check(mutate(_members(members), edits))


@given(extra=st.integers(1, 1000), data=st.binary(max_size=64))
def test_more_members_than_allowed(extra: int, data: bytes) -> None:
    body = gzip.compress(data) * (MAX_GZIP_MEMBERS + extra)
    try:
        gunzip(body, 1 << 20)
    except PayloadTooLarge:
        raise AssertionError("refused for size, not for its members") from None
    except DecodeError as exc:
        assert str(exc) == f"gzip body has more than {MAX_GZIP_MEMBERS} members"
    else:
        raise AssertionError(f"{MAX_GZIP_MEMBERS + extra} members taken")
