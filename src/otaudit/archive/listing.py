"""What an archive holds: its segments with their locks, and reading records back out.

:func:`list_segments` reads only the object listing and each object's head (size, lock,
record count). :func:`segment_records` streams one segment's sealed records with their seqs;
:func:`subject_segments` uses it to find the segments that hold a data subject's records
(for ``otaudit erase``, which must say which archives still hold them and until when they
cannot be changed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Final

import orjson

from otaudit.archive.segments import RECORDS_METADATA, SEGMENT_PREFIX, SegmentName
from otaudit.archive.target import ArchiveTarget
from otaudit.bundle import CANONICAL, MANIFEST, Selection, read_packed
from otaudit.bundle.layout import derive
from otaudit.canonical import canonical_bytes
from otaudit.errors import ConfigError, VerificationError

_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One archived segment: object name, first and last seq, records (None: not stated),
    size in bytes, and its lock (retention mode, retain-until date, legal hold)."""

    name: str
    first_seq: int
    last_seq: int
    records: int | None
    size_bytes: int
    retain_until: datetime | None
    legal_hold: bool
    mode: str | None


def list_segments(target: ArchiveTarget) -> list[SegmentInfo]:
    """The segments of ``target``, by first seq (objects that are not segments are left out)."""
    found: list[tuple[SegmentName, SegmentInfo]] = []
    for name in target.names(SEGMENT_PREFIX):
        parsed = SegmentName.parse(name)
        if parsed is None:
            continue
        info = target.info(name)
        stated = info.metadata.get(RECORDS_METADATA, "")
        records = int(stated) if stated.isdigit() else None
        found.append((parsed, SegmentInfo(name, parsed.first_seq, parsed.last_seq, records,
                                           info.size_bytes, info.lock.retain_until,
                                           info.lock.legal_hold, info.lock.mode)))  # fmt: skip
    found.sort(key=lambda p: (p[0].first_seq, p[0].last_seq, p[0].version))
    return [info for _, info in found]


def fetch_segment(target: ArchiveTarget, name: str, out: Path) -> int:
    """Copy segment ``name`` unchanged to the new file ``out`` (mode 0600), for
    ``otaudit verify-bundle`` to check offline; its size in bytes. ConfigError if ``name``
    is not a segment's name or ``out`` exists."""
    if SegmentName.parse(name) is None:
        raise ConfigError(f"{name!r} is not a segment's name (see `otaudit archive list`)")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc.strerror or exc}") from exc
    size = 0
    try:
        with os.fdopen(fd, "wb") as f, target.open(name) as source:
            while chunk := source.read(_CHUNK):
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return size


def segment_records(source: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """The (seq, sealed bytes) of each record in the packed segment read from ``source``,
    streamed; the seqs are those its manifest selects (VerificationError if it selects
    none, or lists another number of records)."""
    seqs: Iterator[int] = iter(())
    for name, reader in read_packed(source):
        if name == MANIFEST:
            try:
                stated = orjson.loads(reader.read())["selection"]
                selection = Selection.from_manifest(stated)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise VerificationError(f"segment {MANIFEST}: no selection: {exc!r}") from exc
            if not selection.seq_ranges:
                raise VerificationError(f"segment {MANIFEST} selects no seqs: not a segment")
            seqs = selection.seqs()
        elif name == CANONICAL:
            for line in reader:
                seq = next(seqs, None)
                if seq is None or not line.endswith(b"\n"):
                    raise VerificationError(f"segment {CANONICAL} holds other records than "
                                            f"its {MANIFEST} selects")  # fmt: skip
                yield seq, line[:-1]
            if next(seqs, None) is not None:
                raise VerificationError(f"segment {CANONICAL} lacks records its manifest selects")
            return
    raise VerificationError(f"segment has no {CANONICAL}")


def subject_segments(target: ArchiveTarget, subject: str) -> list[SegmentInfo]:
    """The segments of ``target`` holding a record whose actor, target or any attribute
    value is ``subject``. Each segment is streamed, one record at a time."""
    needle = canonical_bytes(subject)  # how the value appears in a sealed record
    holding = []
    for segment in list_segments(target):
        with target.open(segment.name) as f:
            if any(_about(seq, sealed, subject) for seq, sealed in segment_records(f)
                   if needle in sealed):  # fmt: skip
                holding.append(segment)
    return holding


def _about(seq: int, sealed: bytes, subject: str) -> bool:
    columns, _ = derive(seq, sealed)
    if subject in (columns.actor, columns.target):
        return True
    attributes = orjson.loads(columns.attributes)
    return isinstance(attributes, dict) and subject in attributes.values()
