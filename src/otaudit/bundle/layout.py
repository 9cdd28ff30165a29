"""The bundle's layout, shared by export and verification.

The format name and file names (see :mod:`otaudit.bundle` for what each file holds), the
text the manifest's signature signs, the :class:`Selection` of records a bundle states in its
manifest, the :class:`Report` of an export or a verification, and the per-record forms both
sides derive from a sealed record: its columns, its ``records.jsonl`` line and its
``records.csv`` row.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from otaudit.errors import VerificationError
from otaudit.keys import VerifierKey
from otaudit.record import (
    COLUMN_NAMES,
    Columns,
    derive_columns,
    parse_sealed,
    rfc3339_ns,
    rfc3339_to_ns,
)
from otaudit.textsafety import spreadsheet_row

#: The format export writes. ``otaudit-bundle/2`` writes ``records.csv`` for spreadsheets
#: (:func:`csv_row`); ``otaudit-bundle/1`` wrote its values verbatim, and is still read.
FORMAT: Final = "otaudit-bundle/2"
READ_FORMATS: Final = ("otaudit-bundle/1", FORMAT)
CANONICAL, JSONL, CSV = "records.canonical", "records.jsonl", "records.csv"
PROOFS, CHECKPOINT, VERIFIER_KEY = "proofs.jsonl", "checkpoint", "verifier.key"
MANIFEST, MANIFEST_SIG = "manifest.json", "manifest.sig"
#: The rotation records of a log whose key was rotated (:mod:`otaudit.bundle.keys`); only then.
KEYS: Final = "keys.jsonl"
FILES: Final = (CANONICAL, JSONL, CSV, PROOFS, CHECKPOINT, VERIFIER_KEY)
#: The first line of the signed note in ``manifest.sig``. Its second line (``sha256:...``) is
#: never a decimal number, so the note can never be read as a checkpoint (origin, size, root).
MANIFEST_NOTE: Final = "otaudit-bundle-manifest/1"
#: The largest each small file may be; the others are bounded by the sizes the manifest lists.
MAX_BYTES: Final = {MANIFEST: 1 << 20, MANIFEST_SIG: 64 << 10, CHECKPOINT: 64 << 10,
                    VERIFIER_KEY: 4 << 10, KEYS: 1 << 20}  # fmt: skip
CSV_HEADER: Final = ("seq", *COLUMN_NAMES)
_BOUNDS: Final = ("since_utc", "until_utc")
_AFTER_ANY: Final = 2**63  # sorts after every seq, for bisecting (seq, last) pairs


@dataclass(frozen=True)
class Selection:
    """Which records to export: ``since_ns <= time_unix_nano < until_ns`` and ``action``,
    and, when ``seq_ranges`` is not empty, ``first <= seq <= last`` for one of its
    ``(first, last)`` ranges (ascending, not touching: an archive segment's explicit seqs)."""

    since_ns: int | None = None
    until_ns: int | None = None
    actions: tuple[str, ...] = ()
    given: dict[str, Any] = field(default_factory=dict)
    seq_ranges: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        previous = -2
        for first, last in self.seq_ranges:
            if not (type(first) is int and type(last) is int and previous + 1 < first <= last):
                raise ValueError(f"seq ranges must ascend without touching: {self.seq_ranges}")
            previous = last

    @classmethod
    def of_seqs(cls, seqs: Iterable[int]) -> Selection:
        """The selection of exactly ``seqs`` (ascending), as runs of consecutive seqs."""
        return cls(seq_ranges=tuple(seq_runs(seqs)))

    def manifest(self) -> dict[str, Any]:
        """The selection as the manifest records it: as given, plus the resolved UTC bounds
        (and ``seq_ranges``, ``[first, last]`` pairs, only when it selects by seq)."""
        utc = [None if ns is None else rfc3339_ns(ns) for ns in (self.since_ns, self.until_ns)]
        given = {k: self.given.get(k) for k in ("since", "until")}
        out = {**given, "actions": list(self.actions), "since_utc": utc[0], "until_utc": utc[1]}
        if self.seq_ranges:
            out["seq_ranges"] = [list(r) for r in self.seq_ranges]
        return out

    @classmethod
    def from_manifest(cls, sel: dict[str, Any]) -> Selection:
        """The selection a manifest states (its resolved ``*_utc`` bounds, actions and seq
        ranges)."""
        try:
            since, until = (None if sel[k] is None else rfc3339_to_ns(sel[k]) for k in _BOUNDS)
            ranges = tuple((r[0], r[1]) for r in sel.get("seq_ranges", ()) if len(r) == 2)
            if len(ranges) != len(sel.get("seq_ranges", ())):
                raise ValueError("each seq range is [first, last]")
            return cls(since, until, tuple(str(a) for a in sel["actions"]), sel, ranges)
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{MANIFEST}: selection is malformed: {exc!r}") from exc

    def seqs(self) -> Iterator[int]:
        """The seqs the ranges select, ascending (nothing when it does not select by seq)."""
        for first, last in self.seq_ranges:
            yield from range(first, last + 1)

    def describe(self) -> str:
        """The selection in words, for messages."""
        if self.everything:
            return "every record"
        parts = [f"time >= {rfc3339_ns(self.since_ns)}"] if self.since_ns is not None else []
        parts += [f"time < {rfc3339_ns(self.until_ns)}"] if self.until_ns is not None else []
        parts += [f"action in {', '.join(self.actions)}"] if self.actions else []
        if self.seq_ranges:
            runs = [f"{a}" if a == b else f"{a}-{b}" for a, b in self.seq_ranges[:3]]
            more = ", ..." if len(self.seq_ranges) > 3 else ""
            parts.append(f"seq in {', '.join(runs)}{more}")
        return " and ".join(parts)

    @property
    def everything(self) -> bool:
        """Whether every record is selected."""
        return (self.since_ns is None and self.until_ns is None and not self.actions
                and not self.seq_ranges)  # fmt: skip

    @property
    def only_seqs(self) -> bool:
        """Whether only seqs select (no time bound, no action): every seq is then held."""
        return self.since_ns is None and self.until_ns is None and not self.actions

    def matches(self, columns: Columns, seq: int | None = None) -> bool:
        """Whether a record with these columns (and this ``seq``, if given) is selected."""
        t = columns.time_unix_nano
        return ((self.since_ns is None or t >= self.since_ns)
                and (self.until_ns is None or t < self.until_ns)
                and (not self.actions or columns.action in self.actions)
                and (seq is None or self.holds_seq(seq)))  # fmt: skip

    def holds_seq(self, seq: int) -> bool:
        """Whether ``seq`` is selected by the seq ranges (True when there are none)."""
        if not self.seq_ranges:
            return True
        at = bisect.bisect_right(self.seq_ranges, (seq, _AFTER_ANY)) - 1
        return at >= 0 and self.seq_ranges[at][0] <= seq <= self.seq_ranges[at][1]


def seq_runs(seqs: Iterable[int]) -> Iterator[tuple[int, int]]:
    """The runs ``(first, last)`` of consecutive numbers in ascending ``seqs``."""
    run: list[int] = []
    for seq in seqs:
        if run and seq == run[1] + 1:
            run[1] = seq
            continue
        if run:
            yield run[0], run[1]
        run = [seq, seq]
    if run:
        yield run[0], run[1]


@dataclass(frozen=True)
class Report:
    """What an export wrote, or what a bundle verification checked."""

    records: int
    record_bytes: int
    tree_size: int
    seconds: float
    left_out: int = 0
    key: VerifierKey | None = None
    #: Whether ``manifest.sig`` signs the manifest with the log's key (written, or verified).
    manifest_signed: bool = False
    #: Whether the bundle holds every record of the log up to ``tree_size`` (verified).
    complete: bool = False
    selection: Selection = field(default_factory=Selection)

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def manifest_note_text(manifest: bytes) -> str:
    """The text ``manifest.sig`` signs (c2sp.org/signed-note): :data:`MANIFEST_NOTE` and the
    SHA-256 of the exact bytes of ``manifest.json``."""
    return f"{MANIFEST_NOTE}\nsha256:{hashlib.sha256(manifest).hexdigest()}\n"


def derive(seq: int, sealed: bytes) -> tuple[Columns, dict[str, Any]]:
    """The derived columns and parsed envelope of record ``seq``; VerificationError if invalid."""
    try:
        envelope, _ = parse_sealed(sealed)
        return derive_columns(envelope), envelope
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(f"seq {seq}: not a valid sealed record: {exc}", seq) from exc


def jsonl_line(seq: int, columns: Columns, envelope: dict[str, Any]) -> bytes:
    """One line of ``records.jsonl``: seq, every column, and the parsed record."""
    return orjson.dumps({"seq": seq, **columns._asdict(), "record": envelope}) + b"\n"


def csv_row(seq: int, columns: Columns, fmt: str = FORMAT) -> list[str]:
    """One row of ``records.csv`` in bundle format ``fmt`` (NULL as the empty string): since
    ``otaudit-bundle/2`` a value that starts like a spreadsheet formula, or with ``'``, has a
    ``'`` put before it (:func:`otaudit.textsafety.spreadsheet_cell`)."""
    row = [str(seq), *("" if v is None else str(v) for v in columns)]
    return row if fmt == "otaudit-bundle/1" else spreadsheet_row(row)
