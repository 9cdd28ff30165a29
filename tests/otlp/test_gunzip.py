"""gzip bodies (RFC 1952): output, members and time bounded; cross-checked with ``gzip``."""

from __future__ import annotations

import gzip
import os
import random
import time

import pytest

from otaudit.errors import DecodeError, PayloadTooLarge
from otaudit.otlp.body import MAX_GZIP_MEMBERS, gunzip

# One part that does not compress, one that does (seeded: every test worker collects the
# same cuts).
PAYLOAD = random.Random(14).randbytes(3000) + bytes(200_000)
MEMBER = gzip.compress(PAYLOAD, mtime=0)
EMPTY = gzip.compress(b"", mtime=0)


def test_one_member() -> None:
    assert gunzip(MEMBER, len(PAYLOAD)) == PAYLOAD


def test_as_many_members_as_allowed() -> None:
    parts = [PAYLOAD[i : i + 3500] for i in range(0, 3500 * MAX_GZIP_MEMBERS, 3500)]
    body = b"".join(gzip.compress(part, compresslevel=1 + n % 9) for n, part in enumerate(parts))
    assert gunzip(body, len(PAYLOAD)) == gzip.decompress(body) == b"".join(parts)


def test_one_member_too_many() -> None:
    with pytest.raises(DecodeError, match=f"more than {MAX_GZIP_MEMBERS} members"):
        gunzip(EMPTY * (MAX_GZIP_MEMBERS + 1), 1024)


def test_empty_members_cost_the_same_each() -> None:
    """Each member costs the same whatever follows it (the rest of the body used to be
    copied once per member: 200,000 empty members took 11 s)."""

    def seconds(members: int) -> float:
        body = EMPTY * members
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            gunzip(body, 1024, max_members=members)
            best = min(best, time.perf_counter() - started)
        return best

    assert seconds(80_000) < 8 * seconds(20_000)  # linear: 4 times; quadratic: 16


def test_output_at_the_limit() -> None:
    assert gunzip(MEMBER, len(PAYLOAD)) == PAYLOAD
    with pytest.raises(PayloadTooLarge, match=f"larger than {len(PAYLOAD) - 1} bytes"):
        gunzip(MEMBER, len(PAYLOAD) - 1)


def test_bomb_over_the_limit_is_not_inflated() -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9, mtime=0)
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge):
        gunzip(bomb, 64 * 1024)
    assert time.monotonic() - started < 0.5


def test_bomb_in_the_last_of_many_members() -> None:
    body = MEMBER * 3 + gzip.compress(bytes(1 << 24), mtime=0)
    with pytest.raises(PayloadTooLarge):
        gunzip(body, 4 * len(PAYLOAD))


def test_time_limit() -> None:
    body = gzip.compress(os.urandom(4 << 20), compresslevel=1, mtime=0)
    with pytest.raises(PayloadTooLarge, match="longer than 1e-09 s"):
        gunzip(body, 8 << 20, timeout_s=1e-9)


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 100, len(MEMBER) - 10, len(MEMBER) - 1])
def test_truncated(cut: int) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        gunzip(MEMBER[:-cut], len(PAYLOAD))


def test_truncated_second_member() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        gunzip(MEMBER + MEMBER[:-1], 2 * len(PAYLOAD))


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("empty", b""),
        ("trailing-garbage", MEMBER + b"x"),
        ("trailing-zeros", MEMBER + bytes(8)),
        ("crc-bit-0", MEMBER[:-8] + bytes([MEMBER[-8] ^ 1]) + MEMBER[-7:]),
        ("size-plus-1", MEMBER[:-4] + (len(PAYLOAD) + 1).to_bytes(4, "little")),
        ("magic-bit-0", bytes([MEMBER[0] ^ 1]) + MEMBER[1:]),
        ("not-gzip", b"\x00\x01 plain protobuf"),
    ],
)
def test_corrupt(name: str, body: bytes) -> None:
    with pytest.raises(DecodeError):
        gunzip(body, 2 * len(PAYLOAD))
