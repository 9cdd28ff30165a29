"""Reading a record row that keeps its resource once.

A record's sealed bytes carry a full copy of its OTLP resource; a store keeps
each distinct resource once (table ``resources``: SHA-256 of the resource's
canonical bytes, those bytes, its flattened attributes) and a record row keeps
its sealed bytes with the resource cut out, the resource's hash and the byte
offset of the cut (``docs/record-format.md``, "How a record is stored").
Every read splices the resource back, so what a reader gets (and what the
leaf hash covers) is the whole sealed record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from otaudit.record import RESOURCE_COLUMN, Columns
from otaudit.store.base import StoredRecord, StoredResource


def stored_record(
    row: Sequence[Any],
    resource_hash: bytes | None,
    resource_at: int | None,
    kept: tuple[bytes, str] | None,
) -> StoredRecord:
    """The record of a ``records`` row ``(seq, sealed, dedup_key, *columns)`` as stored,
    its ``resource_hash`` and ``resource_at`` columns, and ``kept``: the (body, flat) of
    the ``resources`` row under that hash (None: none).

    A row that keeps its resource once has its sealed bytes with the resource cut out
    and no ``resource`` column of its own (empty); its sealed bytes are
    ``stored[:at] + body + stored[at:]`` and its ``resource`` column the resource's
    flattened attributes. Whatever is wrong (no such resource, an offset out of range)
    leaves the bytes as stored, for ``verify`` to find and name.
    """
    if resource_hash is None and resource_at is None:
        return StoredRecord(int(row[0]), bytes(row[1]), bytes(row[2]), Columns(*row[3:]))
    stored = bytes(row[1])
    at = -1 if resource_at is None else int(resource_at)
    body = None if kept is None else kept[0]
    sealed = stored
    if body is not None and 0 <= at <= len(stored):
        sealed = b"".join((stored[:at], body, stored[at:]))
    columns = row[3:]
    if columns[RESOURCE_COLUMN] in (None, ""):
        flat = None if kept is None else kept[1]
        columns = (*columns[:RESOURCE_COLUMN], flat, *columns[RESOURCE_COLUMN + 1 :])
    part = StoredResource(at, b"" if resource_hash is None else bytes(resource_hash), body)
    return StoredRecord(int(row[0]), sealed, bytes(row[2]), Columns(*columns), part)


class ResourceCache:
    """The resources a reader has looked up, by hash, up to ``max_bytes`` of bodies
    (then it starts again): records of one resource come in runs, so a read of many
    records fetches each resource about once."""

    def __init__(
        self, fetch: Callable[[bytes], tuple[bytes, str] | None], max_bytes: int = 64 << 20
    ) -> None:
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._held: dict[bytes, tuple[bytes, str] | None] = {}
        self._bytes = 0

    def get(self, resource_hash: bytes | None) -> tuple[bytes, str] | None:
        """The (body, flat) kept under ``resource_hash`` (None: no hash, or no such row)."""
        if resource_hash is None:
            return None
        key = bytes(resource_hash)
        if key in self._held:
            return self._held[key]
        found = self._fetch(key)
        size = 0 if found is None else len(found[0])
        if self._bytes + size > self._max_bytes:
            self._held.clear()
            self._bytes = 0
        self._held[key] = found
        self._bytes += size
        return found
