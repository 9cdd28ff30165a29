"""Archiving records as segments: evidence bundles packed one per object, in seq order.

A segment is a bundle (:mod:`otaudit.bundle`) of an explicit list of seqs, proven against
the ledger's latest signed checkpoint, packed as one ``.tar.gz`` (:mod:`otaudit.bundle.packed`)
and stored as ``segment-FIRST-LAST.tar.gz`` (twelve digits each, so names sort by seq,
which is time order). The object carries COMPLIANCE retention until the latest
retain-until date of its records (none if none has one) and a legal hold when any of its
records is held; its metadata says how many records it holds.

Archiving is idempotent: a segment whose name exists already and whose manifest selects
the same seqs is skipped (reported in :attr:`ArchiveResult.skipped`). A segment with the
same first and last seq but other seqs in between (records archived again after some were
removed) is written under the next free name, ``segment-FIRST-LAST-2.tar.gz`` and so on:
nothing is ever overwritten.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from otaudit.archive.target import ArchiveTarget
from otaudit.bundle import PACKED_SUFFIX, Selection, export_bundle, pack_bundle, packed_manifest
from otaudit.errors import ConfigError, OtauditError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.progress import Progress
from otaudit.store.base import Store

#: Records per segment unless the caller says otherwise.
DEFAULT_MAX_RECORDS: Final = 100_000
#: Runs of consecutive seqs per segment at most: the manifest lists them, and stays small.
MAX_RUNS: Final = 10_000
SEGMENT_PREFIX: Final = "segment-"
#: The object metadata (``x-amz-meta-...``) holding a segment's record count.
RECORDS_METADATA: Final = "otaudit-records"
_NAME: Final = re.compile(r"segment-(\d{12})-(\d{12})(?:-([1-9]\d*))?" + re.escape(PACKED_SUFFIX))


@dataclass(frozen=True, slots=True)
class SegmentName:
    """What a segment's object name says: its first and last seq, and which version."""

    first_seq: int
    last_seq: int
    version: int = 1

    def __str__(self) -> str:
        more = f"-{self.version}" if self.version > 1 else ""
        return f"{SEGMENT_PREFIX}{self.first_seq:012d}-{self.last_seq:012d}{more}{PACKED_SUFFIX}"

    @classmethod
    def parse(cls, name: str) -> SegmentName | None:
        """The parts of a segment's object name (None: not a segment's name)."""
        found = _NAME.fullmatch(name)
        if found is None:
            return None
        return cls(int(found[1]), int(found[2]), int(found[3] or 1))


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """What :func:`archive_records` did: records archived (written, or already there),
    the names of the segments written, and of those already there (skipped)."""

    records: int
    segments: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def archive_records(
    store: Store,
    key: VerifierKey,
    target: ArchiveTarget,
    seqs: Sequence[int],
    retain_until: Mapping[int, datetime | None],
    held: set[int],
    *,
    signer: SigningKey | None = None,
    max_records: int = DEFAULT_MAX_RECORDS,
    progress: Progress | None = None,
) -> ArchiveResult:
    """Write the records ``seqs`` (ascending, each stored and under the latest signed
    checkpoint) to ``target`` as segments of at most ``max_records`` records.

    Each segment is a bundle proven against the latest checkpoint (``key``: the log's
    verifier key; with ``signer``, its signing key, the manifest is signed), locked in
    COMPLIANCE mode until the latest of ``retain_until`` over its seqs (a seq missing from
    it, or None: no date) and held when one of its seqs is in ``held``. ``progress``
    (optional) is called with the number of records archived so far.
    """
    # (1) Preconditions, checked before anything is written: ascending seqs, every one
    # stored (not removed already) and under the signed checkpoint a bundle is proven by.
    if max_records < 1:
        raise ConfigError(f"max_records must be at least 1, not {max_records}")
    if any(b <= a for a, b in itertools.pairwise(seqs)):
        raise ConfigError("the seqs to archive must be ascending, each once")
    if not seqs:
        return ArchiveResult(0)
    latest = store.latest_checkpoint()
    signed = 0 if latest is None else latest.tree_size
    if seqs[0] < 0 or seqs[-1] >= signed:
        raise ConfigError(
            f"seq {seqs[-1] if seqs[0] >= 0 else seqs[0]} is not under the latest signed "
            f"checkpoint (tree size {signed}): archive it after the next checkpoint"
        )

    # (2) Segments: runs of the seqs, each written unless the target has it already.
    existing = _existing(target)
    written: list[str] = []
    skipped: list[str] = []
    done = 0
    for chunk in _chunks(seqs, max_records):
        _check_present(store, chunk)
        selection = Selection.of_seqs(chunk)
        versions = existing.get((chunk[0], chunk[-1]), {})
        same = next((n for n in versions.values() if _selects(target, n, selection)), None)
        if same is not None:
            skipped.append(same)
        else:
            name = str(SegmentName(chunk[0], chunk[-1], max(versions, default=0) + 1))
            until = max((d for s in chunk if (d := retain_until.get(s)) is not None), default=None)
            hold = any(s in held for s in chunk)
            _write(store, key, target, name, selection, signer, until, hold, len(chunk))
            written.append(name)
        done += len(chunk)
        if progress is not None:
            progress(done)
    return ArchiveResult(done, written, skipped)


def _chunks(seqs: Sequence[int], max_records: int) -> Iterator[list[int]]:
    """Consecutive pieces of ``seqs``: at most ``max_records`` seqs and :data:`MAX_RUNS`
    runs of consecutive seqs each."""
    chunk: list[int] = []
    runs = 0
    for seq in seqs:
        starts_run = not chunk or seq != chunk[-1] + 1
        if chunk and (len(chunk) == max_records or (starts_run and runs == MAX_RUNS)):
            yield chunk
            chunk, runs, starts_run = [], 0, True
        chunk.append(seq)
        runs += starts_run
    if chunk:
        yield chunk


def _existing(target: ArchiveTarget) -> dict[tuple[int, int], dict[int, str]]:
    """The target's segments by (first, last) seq, then version."""
    found: dict[tuple[int, int], dict[int, str]] = {}
    for name in target.names(SEGMENT_PREFIX):
        parsed = SegmentName.parse(name)
        if parsed is not None:
            found.setdefault((parsed.first_seq, parsed.last_seq), {})[parsed.version] = name
    return found


def _selects(target: ArchiveTarget, name: str, selection: Selection) -> bool:
    """Whether segment ``name`` states the same seqs as ``selection`` (False: unreadable)."""
    try:
        with target.open(name) as f:
            stated = Selection.from_manifest(packed_manifest(f).get("selection", {}))
    except OtauditError:
        return False
    return stated.seq_ranges == selection.seq_ranges


def _check_present(store: Store, chunk: list[int]) -> None:
    present = set(store.present_seqs(chunk[0], chunk[-1]))
    missing = next((s for s in chunk if s not in present), None)
    if missing is not None:
        raise ConfigError(f"seq {missing} is not stored (removed already?): nothing to archive")


def _write(
    store: Store, key: VerifierKey, target: ArchiveTarget, name: str, selection: Selection,
    signer: SigningKey | None, until: datetime | None, hold: bool, records: int,
) -> None:  # fmt: skip
    """Export the bundle of ``selection`` into a private temporary directory, pack it and
    put it as object ``name`` with its lock."""
    with tempfile.TemporaryDirectory(prefix="otaudit-segment-") as tmp:
        report = export_bundle(store, key, Path(tmp) / "bundle", selection, signer)
        if report.records != records:
            raise ConfigError(f"{name}: {report.records} records exported of {records}")
        packed = Path(tmp) / name
        with open(packed, "wb") as out:
            pack_bundle(Path(tmp) / "bundle", out)
            out.flush()
            os.fsync(out.fileno())
        target.put(name, packed, retain_until=until, legal_hold=hold,
                   metadata={RECORDS_METADATA: str(records)})  # fmt: skip
