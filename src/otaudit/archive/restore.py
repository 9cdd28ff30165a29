"""Bringing one removed record back from an archive: ``otaudit archive restore``.

The record's row was removed from the store (its payload pruned) but its leaf stays in the
tree. :func:`restore` finds the segment that holds it, checks that the segment's checkpoint
is signed by the log's key, and that the archived bytes hash to the stored leaf (RFC 9162
§2.1.1: ``SHA-256(0x00 || bytes)``), so only the very bytes the ledger sealed come back.
Then the row is stored again with its columns and dedup key derived from those bytes, and
the restore is recorded on the ledger (``otaudit.archive_restore``: who, which seq, from
which archive and segment).
"""

from __future__ import annotations

import orjson

from otaudit import merkle
from otaudit.access import Reader, log_request, seal_request
from otaudit.archive.segments import SEGMENT_PREFIX, SegmentName
from otaudit.archive.target import ArchiveTarget
from otaudit.bundle import CANONICAL, CHECKPOINT, MANIFEST, Selection, read_packed
from otaudit.errors import Conflict, NotFound, OtauditError, VerificationError
from otaudit.keyhistory import history_for
from otaudit.keys import VerifierKey
from otaudit.ownrecords import Appender, append_one
from otaudit.record import Entry, dedup_key, derive_columns, parse_sealed
from otaudit.retention.removal import RESTORE_ACTION as RESTORE_ACTION
from otaudit.store.base import Store


def restore(
    store: Store, key: VerifierKey, target: ArchiveTarget, seq: int, appender: Appender,
    reader: Reader,
) -> int:  # fmt: skip
    """Store again the removed row of record ``seq`` from the segment of ``target`` that
    holds it, and record that ``reader`` did; return that record's seq.

    NotFound if ``seq`` is not in the tree or no segment holds it; Conflict if its row is
    stored already; VerificationError if the segment's checkpoint is not signed by the
    log's ``key`` or the archived bytes do not hash to the stored leaf."""
    # (1) Preconditions: the leaf exists (requires 0 <= seq < tree size) and its row does not.
    size = store.tree_size()
    if not 0 <= seq < size:
        raise NotFound(f"seq {seq} is not in the ledger (tree size {size})")
    if store.present_seqs(seq, seq):
        raise Conflict(f"seq {seq} is in the ledger already: nothing to restore")

    # (2) The segment: the one whose name's range holds seq and whose manifest selects it
    # (a later version first), its checkpoint signed by the log's key.
    name, sealed = _find(store, key, target, seq)

    # (3) Compute, then compare: the archived bytes must be the sealed leaf's input.
    (stored,) = store.nodes([(0, seq)])
    computed = merkle.leaf_hash(sealed)
    if computed != stored:
        raise VerificationError(
            f"seq {seq}: the record in {target.url} {name} does not hash to the stored leaf "
            f"(stored {stored.hex()}, computed {computed.hex()}); nothing restored",
            seq, expected=stored, computed=computed,
        )  # fmt: skip

    # (4) The row again, everything derived from the bytes; then the record of the restore.
    store.restore(seq, entry_of(seq, sealed))
    return append_one(appender, restore_entry(reader, seq, target.url, name))


def entry_of(seq: int, sealed: bytes) -> Entry:
    """The entry the ledger holds for sealed bytes: leaf hash, dedup key and the columns
    derived from them (VerificationError if they are not a sealed record)."""
    try:
        envelope, content = parse_sealed(sealed)
        columns = derive_columns(envelope)
        key = dedup_key(envelope["pipeline"], content)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(f"seq {seq}: not a valid sealed record: {exc}", seq) from exc
    return Entry(sealed, merkle.leaf_hash(sealed), key, columns)


def restore_entry(reader: Reader, seq: int, url: str, segment: str) -> Entry:
    """The sealed record of ``reader`` restoring record ``seq`` from ``segment`` of the
    archive at ``url``."""
    attributes: dict[str, str | int] = {
        "audit.target": str(seq),
        "audit.archive.url": url,
        "audit.archive.segment": segment,
        "audit.result": "success",
    }
    body = f"{reader.actor}: restored seq {seq} from {url} {segment}"
    return seal_request(log_request(reader, RESTORE_ACTION, "audit_record", body, attributes))


def _find(store: Store, key: VerifierKey, target: ArchiveTarget, seq: int) -> tuple[str, bytes]:
    candidates = sorted(
        ((parsed.version, name) for name in target.names(SEGMENT_PREFIX)
         if (parsed := SegmentName.parse(name)) and parsed.first_seq <= seq <= parsed.last_seq),
        reverse=True,
    )  # fmt: skip
    for _, name in candidates:
        found = _read(store, key, target, name, seq)
        if found is not None:
            return name, found
    raise NotFound(f"no segment of {target.url} holds seq {seq}")


def _read(
    store: Store, key: VerifierKey, target: ArchiveTarget, name: str, seq: int
) -> bytes | None:
    """Record ``seq``'s bytes in segment ``name`` (None: its manifest does not select it),
    in one pass: the manifest says which line, the checkpoint must be the log's."""
    where = f"{target.url} {name}"
    line, signed = -1, False
    with target.open(name) as f:
        for member, data in read_packed(f):
            if member == MANIFEST:
                try:
                    selection = Selection.from_manifest(orjson.loads(data.read())["selection"])
                except (orjson.JSONDecodeError, KeyError, TypeError, VerificationError):
                    return None
                if not selection.seq_ranges or not selection.holds_seq(seq):
                    return None
                line = _line_of(selection, seq)
            elif member == CHECKPOINT:
                try:
                    cp = history_for(store, key).open_checkpoint(data.read(), store.meta("origin"))
                except OtauditError as exc:
                    raise VerificationError(f"{where}: {CHECKPOINT}: {exc}", seq) from exc
                if seq >= cp.tree_size:
                    raise VerificationError(f"{where}: its checkpoint does not cover seq {seq}")
                signed = True
            elif member == CANONICAL:
                if not signed or line < 0:
                    raise VerificationError(f"{where}: {CHECKPOINT} is missing", seq)
                for n, text in enumerate(data):
                    if n == line:
                        return text.removesuffix(b"\n")
                break
    raise VerificationError(f"{where}: seq {seq} is missing from {CANONICAL}", seq)


def _line_of(selection: Selection, seq: int) -> int:
    """Which line of ``records.canonical`` holds ``seq`` (one the selection holds)."""
    before = 0
    for first, last in selection.seq_ranges:
        if first <= seq <= last:
            return before + seq - first
        before += last - first + 1
    raise ValueError(f"seq {seq} is not selected")
