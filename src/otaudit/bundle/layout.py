"""The bundle's layout, shared by export and verification.

The format name and file names (see :mod:`otaudit.bundle` for what each file holds), the
text the manifest's signature signs, the :class:`Selection` of records a bundle states in its
manifest, the :class:`Report` of an export or a verification, and the per-record forms both
sides derive from a sealed record: its columns, its ``records.jsonl`` line and its
``records.csv`` row.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from otaudit.errors import VerificationError
from otaudit.keys import VerifierKey
from otaudit.record import COLUMN_NAMES, Columns, derive_columns, parse_sealed, rfc3339_ns
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


@dataclass(frozen=True)
class Selection:
    """Which records to export: ``since_ns <= time_unix_nano < until_ns`` and ``action``."""

    since_ns: int | None = None
    until_ns: int | None = None
    actions: tuple[str, ...] = ()
    given: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """The selection as the manifest records it: as given, plus the resolved UTC bounds."""
        utc = [None if ns is None else rfc3339_ns(ns) for ns in (self.since_ns, self.until_ns)]
        given = {k: self.given.get(k) for k in ("since", "until")}
        return {**given, "actions": list(self.actions), "since_utc": utc[0], "until_utc": utc[1]}

    @classmethod
    def from_manifest(cls, sel: dict[str, Any]) -> Selection:
        """The selection a manifest states (its resolved ``*_utc`` bounds and actions)."""
        try:
            since, until = (None if sel[k] is None else _utc_ns(sel[k]) for k in _BOUNDS)
            return cls(since, until, tuple(str(a) for a in sel["actions"]), sel)
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{MANIFEST}: selection is malformed: {exc!r}") from exc

    def describe(self) -> str:
        """The selection in words, for messages."""
        if self.everything:
            return "every record"
        parts = [f"time >= {rfc3339_ns(self.since_ns)}"] if self.since_ns is not None else []
        parts += [f"time < {rfc3339_ns(self.until_ns)}"] if self.until_ns is not None else []
        parts += [f"action in {', '.join(self.actions)}"] if self.actions else []
        return " and ".join(parts)

    @property
    def everything(self) -> bool:
        """Whether every record is selected."""
        return self.since_ns is None and self.until_ns is None and not self.actions

    def matches(self, columns: Columns) -> bool:
        """Whether a record with these columns is selected."""
        t = columns.time_unix_nano
        return ((self.since_ns is None or t >= self.since_ns)
                and (self.until_ns is None or t < self.until_ns)
                and (not self.actions or columns.action in self.actions))  # fmt: skip


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


def _utc_ns(text: str) -> int:
    """UTC nanoseconds of ``rfc3339_ns`` text (``2026-01-01T00:00:00.000000000Z``)."""
    if len(text) != 30 or text[19] != "." or text[-1] != "Z":
        raise ValueError(f"{text!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ")
    seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int(text[20:29])


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
