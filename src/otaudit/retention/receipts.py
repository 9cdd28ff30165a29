"""Receipts: the sealed record of every removal of record payloads.

A prune or an erasure first appends a receipt, a record of otaudit's own (pipeline
``otaudit``, action ``otaudit.prune`` or ``otaudit.erase``), and only then lets the
database delete the rows it names (table ``removals``) and deletes them. A receipt says:

- ``otaudit.receipt.ranges``: the sequence numbers removed, as inclusive ranges in
  order (``0-99,120,130-140``);
- ``otaudit.receipt.count``: how many they are;
- ``otaudit.receipt.leaf_digest``: SHA-256 over their leaf hashes (tree level 0) in
  sequence order, so that the receipt pins exactly which records went;
- why: the retention policy's SHA-256 (``otaudit.retention.policy``) for a prune, the
  subject's HMAC (``otaudit.erase.subject``, never the subject itself) and the reason
  for an erasure, and the archive the records were copied to, if any.

A prune of many scattered records writes several receipts, each with ranges of at most
:data:`MAX_RANGES_TEXT` characters. ``otaudit verify`` reads the receipts back
(:func:`read_receipts`), accepts a missing payload only inside their ranges and
recomputes each digest from the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from otaudit.access import Reader, log_request, seal_request
from otaudit.record import Entry
from otaudit.store.base import Store

PRUNE_ACTION: Final = "otaudit.prune"
ERASE_ACTION: Final = "otaudit.erase"
RECEIPT_ACTIONS: Final = (PRUNE_ACTION, ERASE_ACTION)
#: The longest ranges text one receipt carries (well under the 64 KiB attribute limit).
MAX_RANGES_TEXT: Final = 32 * 1024

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt as the ledger holds it (``kind``: ``prune`` or ``erase``)."""

    seq: int
    kind: str
    ranges: tuple[Range, ...]
    count: int
    leaf_digest: str
    policy: str = ""
    subject: str = ""
    reason: str = ""
    archive: str = ""

    def seqs(self) -> Iterator[int]:
        """Every sequence number the receipt names, in order."""
        for first, last in self.ranges:
            yield from range(first, last + 1)


def to_ranges(seqs: Iterable[int]) -> list[Range]:
    """Sorted, distinct ``seqs`` as maximal inclusive runs."""
    out: list[Range] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def ranges_text(ranges: Sequence[Range]) -> str:
    """``0-99,120,130-140``."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def parse_ranges(text: str) -> tuple[Range, ...]:
    """The ranges of :func:`ranges_text`; ValueError unless ascending and disjoint."""
    out: list[Range] = []
    for part in text.split(",") if text else ():
        first, sep, last = part.partition("-")
        a, b = int(first), int(last) if sep else int(first)
        if a < 0 or b < a or (out and a <= out[-1][1]):
            raise ValueError(f"range {part!r} is not ascending after the one before")
        out.append((a, b))
    return tuple(out)


def count(ranges: Iterable[Range]) -> int:
    """How many sequence numbers the ranges hold."""
    return sum(b - a + 1 for a, b in ranges)


def chunks(ranges: Sequence[Range], max_text: int = MAX_RANGES_TEXT) -> list[list[Range]]:
    """``ranges`` cut into consecutive groups whose text fits one receipt."""
    groups: list[list[Range]] = [[]]
    size = 0
    for a, b in ranges:
        width = len(str(a)) + (len(str(b)) + 1 if b != a else 0) + 1
        if groups[-1] and size + width > max_text:
            groups.append([])
            size = 0
        groups[-1].append((a, b))
        size += width
    return [g for g in groups if g]


def leaf_digest(store: Store, ranges: Sequence[Range]) -> str:
    """SHA-256 over the leaf hashes of the ranges' seqs, in order (one pass over level 0)."""
    digest = hashlib.sha256()
    if not ranges:
        return digest.hexdigest()
    leaves = store.iter_level(0, ranges[0][0])
    try:
        at = iter(ranges)
        first, last = next(at)
        for idx, leaf in leaves:
            while idx > last:
                step = next(at, None)
                if step is None:
                    return digest.hexdigest()
                first, last = step
            if idx >= first:
                digest.update(leaf)
        return digest.hexdigest()
    finally:
        getattr(leaves, "close", lambda: None)()


def receipt_entry(
    reader: Reader,
    kind: str,
    ranges: Sequence[Range],
    digest: str,
    *,
    policy: str = "",
    subject: str = "",
    reason: str = "",
    archive: str = "",
) -> Entry:
    """The sealed receipt of removing the payloads of ``ranges`` (no personal data: the
    subject is its HMAC)."""
    n = count(ranges)
    attributes: dict[str, str | int] = {
        "otaudit.receipt.kind": kind,
        "otaudit.receipt.ranges": ranges_text(ranges),
        "otaudit.receipt.count": n,
        "otaudit.receipt.leaf_digest": digest,
        "audit.result": "success",
    }
    for name, value in (
        ("otaudit.retention.policy", policy),
        ("otaudit.erase.subject", subject),
        ("audit.reason", reason),
        ("otaudit.archive", archive),
    ):
        if value:
            attributes[name] = value
    action = PRUNE_ACTION if kind == "prune" else ERASE_ACTION
    verb = "pruned" if kind == "prune" else "erased"
    body = f"{reader.actor}: {verb} the payloads of {n} records"
    return seal_request(log_request(reader, action, "ledger", body, attributes))


def _attributes(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    loaded = orjson.loads(value)
    return loaded if isinstance(loaded, dict) else {}


def read_receipts(store: Store, end: int | None = None) -> list[Receipt]:
    """Every receipt on the ledger (with ``seq < end``), in sequence order; ValueError
    naming the seq of one that cannot be read."""
    out = []
    for seq, _time, _actor, _target, attributes in store.action_rows(list(RECEIPT_ACTIONS)):
        if end is not None and int(seq) >= end:
            break
        a = _attributes(attributes)
        try:
            ranges = parse_ranges(str(a["otaudit.receipt.ranges"]))
            receipt = Receipt(
                int(seq),
                str(a["otaudit.receipt.kind"]),
                ranges,
                int(a["otaudit.receipt.count"]),
                str(a["otaudit.receipt.leaf_digest"]),
                str(a.get("otaudit.retention.policy", "")),
                str(a.get("otaudit.erase.subject", "")),
                str(a.get("audit.reason", "")),
                str(a.get("otaudit.archive", "")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"seq {seq}: a receipt that cannot be read: {exc}") from exc
        out.append(receipt)
    return out


def merged(receipts: Iterable[Receipt]) -> list[Range]:
    """The union of the receipts' ranges, as sorted disjoint ranges."""
    out: list[Range] = []
    for a, b in sorted(r for receipt in receipts for r in receipt.ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class Cover:
    """Which seqs sorted disjoint ``ranges`` cover, asked in ascending order (a cursor)."""

    def __init__(self, ranges: Sequence[Range]) -> None:
        self._ranges = ranges
        self._at = 0

    def end_of(self, seq: int) -> int | None:
        """The last seq of the range holding ``seq`` (None: no range holds it)."""
        ranges, at = self._ranges, self._at
        while at < len(ranges) and ranges[at][1] < seq:
            at += 1
        self._at = at
        if at < len(ranges) and ranges[at][0] <= seq:
            return ranges[at][1]
        return None
