"""Full verification of a ledger: every record, every column, every node, every checkpoint.

``verify_ledger`` raises ``VerificationError`` at the first problem, naming
the sequence number (or tree node, or checkpoint) and what is wrong;
otherwise it returns a report. It reads only stored data and recomputes
everything from the sealed bytes, in five steps:

1. records: sequence numbers dense from 0; a row that keeps its resource once
   names a stored resource whose bytes have that SHA-256 and were cut where
   the record's resource member is; each stored column equals the one
   re-derived from the (spliced) sealed bytes; the dedup key too; the leaf
   hash of the sealed bytes equals the stored leaf (tree level 0);
2. tree: every stored node equals the hash of its two (already checked)
   children, level by level, and no node is missing or extra;
3. checkpoints: each signed note verifies with the log's key, matches its
   stored size and root, and that root equals the root recomputed at its size;
4. coverage: the latest checkpoint covers the tree (records after it are
   reported: they are sealed in the tree but not yet under a signature);
5. timing: no record stayed unsigned while the server went on receiving client
   records more than ``max_signing_delay_s`` later (:mod:`otaudit.latesigning`:
   the trace of a history rewritten and signed again).

Steps 1 and 2 run in the compiled core (:mod:`otaudit._core`, in parallel and without
the GIL; it reads a SQLite ledger itself, and takes the rows a PostgreSQL store reads
in batches). The core only says where the first failure is; the functions here, the
readable reference, are then run at that place, so the message is theirs. Called with
``reference=True``, :func:`verify_ledger` and :func:`verify_range` run the reference
alone (tests hold both to the same verdicts).
"""

from __future__ import annotations

import bisect
import ctypes
import hashlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Final

from otaudit import _core, merkle, tree
from otaudit._core import is_frame
from otaudit.checkpoint import open_checkpoint
from otaudit.conventions import OWN_PIPELINE
from otaudit.errors import VerificationError
from otaudit.keyhistory import KeyHistory, history_for
from otaudit.keys import VerifierKey
from otaudit.latesigning import DEFAULT_MAX_DELAY_S, LateRecord, LateSigning
from otaudit.record import (
    COLUMN_NAMES,
    dedup_keys,
    derive_columns,
    parse_sealed,
    resource_offset,
)
from otaudit.retention import receipts
from otaudit.retention.receipts import Cover, Range, Receipt, read_receipts
from otaudit.store import codec
from otaudit.store.base import Store, StoredRecord
from otaudit.store.sqlite import SQLiteStore
from otaudit.store.sqlite_query import read_uri

Progress = Callable[[int], object]
#: What checkpoints are checked with: a trusted verifier key (the ledger's key history is read
#: from the ledger and must contain it, see :mod:`otaudit.keyhistory`) or a history.
Keys = VerifierKey | KeyHistory


@dataclass(frozen=True)
class VerifyReport:
    """What a successful verification checked."""

    records: int
    record_bytes: int
    seconds: float
    tree_size: int
    checkpoints: int
    checkpoint_size: int
    absent: int = 0  # records whose payload a receipt removed (pruned or erased)
    receipts: tuple[Receipt, ...] = ()

    def removed(self, kind: str) -> tuple[int, int]:
        """(records, receipts) of one kind of removal (``prune`` or ``erase``)."""
        mine = [r for r in self.receipts if r.kind == kind]
        return sum(r.count for r in mine), len(mine)

    @property
    def uncovered(self) -> int:
        """Records sealed in the tree after the latest signed checkpoint."""
        return self.tree_size - self.checkpoint_size

    @property
    def rate(self) -> float:
        """Records checked per second."""
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def _check_kept_resource(rec: StoredRecord) -> None:
    """The resource a row keeps once exists and is the one its hash names."""
    kept = rec.resource
    if kept is None:
        return
    if kept.body is None:
        raise VerificationError(
            f"seq {rec.seq}: its resource {kept.hash.hex() or '(no resource_hash)'} is not in"
            " the resources table",
            rec.seq,
        )
    computed = hashlib.sha256(kept.body).digest()
    if computed != kept.hash:
        raise VerificationError(
            f"seq {rec.seq}: the resources row it names ({kept.hash.hex()}) holds bytes whose"
            f" SHA-256 is {computed.hex()}: the resource was altered",
            rec.seq,
            expected=kept.hash,
            computed=computed,
        )


def _check_cut(rec: StoredRecord) -> None:
    """The resource was cut out where the (leaf-checked) sealed bytes have it."""
    kept = rec.resource
    if kept is None or kept.body is None:
        return
    want = resource_offset(rec.sealed, kept.body)
    if want != kept.at:
        raise VerificationError(
            f"seq {rec.seq}: resource_at is {kept.at} but the record's resource begins at"
            f" byte {want} of its sealed bytes",
            rec.seq,
            expected=want,
            computed=kept.at,
        )


def _check_record(rec: StoredRecord, leaf: bytes) -> dict[str, Any]:
    """Check one record against its leaf; return its (checked) envelope."""
    _check_kept_resource(rec)
    try:
        envelope, content = parse_sealed(rec.sealed)
        derived = derive_columns(envelope)
    except (ValueError, KeyError, TypeError) as exc:
        if is_frame(rec.sealed):  # a compressed row that would not decompress
            raise VerificationError(
                f"seq {rec.seq}: its stored bytes are a zstd frame that cannot be read (the"
                " row or the ledger's dictionary was altered)",
                rec.seq,
            ) from exc
        raise VerificationError(
            f"seq {rec.seq}: sealed bytes are not a valid record: {exc}", rec.seq
        ) from exc
    computed = merkle.leaf_hash(rec.sealed)
    if computed != leaf:
        raise VerificationError(
            f"seq {rec.seq}: record bytes do not match the leaf hash in the tree "
            f"(stored {leaf.hex()}, computed {computed.hex()})",
            rec.seq,
            expected=leaf,
            computed=computed,
        )
    _check_cut(rec)
    if derived != rec.columns:
        for name, want, got in zip(COLUMN_NAMES, derived, rec.columns, strict=True):
            if want != got:
                raise VerificationError(
                    f"seq {rec.seq}: column {name} is {got!r} but the sealed record says {want!r}",
                    rec.seq,
                )
    if rec.dedup_key not in dedup_keys(envelope["pipeline"], content):
        raise VerificationError(
            f"seq {rec.seq}: dedup key does not match the sealed record", rec.seq
        )
    return envelope


def _check_records(
    store: Store,
    progress: Progress | None,
    begin: int = 0,
    end: int | None = None,
    late: LateSigning | None = None,
    removed: Sequence[Range] = (),
) -> tuple[int, int, int]:
    """Check records ``[begin, end)`` against their leaves; return (seqs passed, bytes,
    seqs absent under ``removed``).

    With ``end`` None the check runs to the last record and also refuses
    leaves that have no record. ``late`` sees each record's receive time.
    """
    with ExitStack() as streams:  # closed (their cursors too) also when a check fails
        leaves = store.iter_level(0, begin)
        records = store.iter_records(begin, end)
        for it in (leaves, records):
            streams.callback(getattr(it, "close", lambda: None))
        return _check_stream(leaves, records, progress, begin, end, late, removed)


def _check_stream(
    leaves: Iterator[tuple[int, bytes]],
    records: Iterator[StoredRecord],
    progress: Progress | None,
    begin: int,
    end: int | None,
    late: LateSigning | None,
    removed: Sequence[Range] = (),
) -> tuple[int, int, int]:
    expected = begin
    total_bytes = absent = 0
    cover = Cover(removed)

    def skip_removed(upto: int) -> int:
        """Pass the seqs from ``expected`` below ``upto`` that a receipt covers; the first
        one that none covers is missing."""
        seq = expected
        while seq < upto:
            stop = cover.end_of(seq)
            if stop is None:
                return seq
            seq = min(stop + 1, upto)
        return seq

    for rec in records:
        if rec.seq != expected:
            passed = skip_removed(rec.seq) if rec.seq > expected else expected
            if passed != rec.seq:
                raise VerificationError(
                    f"seq {passed} is missing (the next stored record is seq {rec.seq})"
                    + (" and no receipt covers it" if removed else ""),
                    passed,
                )
            absent += rec.seq - expected
            expected = rec.seq
        idx_leaf = next(leaves, None)
        while idx_leaf is not None and idx_leaf[0] < rec.seq:
            idx_leaf = next(leaves, None)  # the leaves of removed records (covered above)
        if idx_leaf is None or idx_leaf[0] != rec.seq:
            raise VerificationError(
                f"seq {rec.seq}: no leaf hash for this record in the tree", rec.seq
            )
        leaf = bytes(idx_leaf[1])
        envelope = _check_record(rec, leaf)
        if late is not None:
            client = envelope["pipeline"] != OWN_PIPELINE
            late.see(rec.seq, int(envelope["received_at"]), client)
        total_bytes += len(rec.sealed)
        expected += 1
        if progress is not None and expected % 10_000 == 0:
            progress(expected - begin)
    if end is not None:
        passed = skip_removed(end)
        if passed < end:
            raise VerificationError(f"seq {passed} is missing", passed)
        return end - begin, total_bytes, absent + end - expected
    extra = next(leaves, None)
    while extra is not None and extra[0] == expected and cover.end_of(expected) is not None:
        absent, expected, extra = absent + 1, expected + 1, next(leaves, None)
    if extra is not None:
        raise VerificationError(
            f"seq {expected} is missing: the tree has a leaf at index {extra[0]} "
            f"but the ledger holds only {expected} records",
            expected,
        )
    return expected, total_bytes, absent


def _pairs(rows: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes, bytes]]:
    for idx, left in rows:
        nxt = next(rows, None)
        if nxt is None:
            return
        if idx % 2 or nxt[0] != idx + 1:
            raise VerificationError(f"tree nodes out of order near index {idx}")
        yield idx // 2, bytes(left), bytes(nxt[1])


def _check_tree(store: Store, size: int) -> None:
    level = 1
    while size >> level:
        want_count = size >> level
        stored = store.iter_level(level)
        count = 0
        for parent, left, right in _pairs(store.iter_level(level - 1)):
            if parent >= want_count:
                break
            row = next(stored, None)
            first = parent << level
            where = (
                f"tree node level {level} index {parent} (seq {first}..{first + (1 << level) - 1})"
            )
            if row is None or row[0] != parent:
                raise VerificationError(f"{where} is missing", first)
            if merkle.node_hash(left, right) != bytes(row[1]):
                raise VerificationError(f"{where} does not match the hash of its children", first)
            count += 1
        extra = next(stored, None)
        if extra is not None:
            first = extra[0] << level
            raise VerificationError(
                f"tree node level {level} index {extra[0]} covers seq {first}.. but the ledger "
                f"holds only {size} records: seq {size} onwards is missing",
                size,
            )
        if count != want_count:
            raise VerificationError(f"tree level {level} is missing nodes for {size} leaves")
        level += 1
    beyond = next(store.iter_level(level), None)
    if beyond is not None:
        raise VerificationError(f"tree has a node at level {level} beyond a tree of {size} leaves")


def _check_checkpoints(store: Store, key: Keys, size: int) -> tuple[int, int]:
    stored = store.checkpoints()
    if not stored:
        raise VerificationError("the ledger has no signed checkpoint")
    origin = store.meta("origin")
    history = history_for(store, key)  # each rotation record checked, in sequence order
    for cp in stored:
        where = f"checkpoint at tree size {cp.tree_size}"
        try:
            opened = open_checkpoint(cp.note, history.key_for(cp.tree_size), origin)
        except VerificationError as exc:
            raise VerificationError(f"{where}: {exc}") from exc
        if opened.tree_size != cp.tree_size or opened.root_hash != cp.root_hash:
            raise VerificationError(f"{where}: signed note does not match the stored size and root")
        if cp.tree_size > size:
            raise VerificationError(
                f"{where}: the ledger holds only {size} records; seq {size} onwards is missing",
                size,
                expected=cp.tree_size,
                computed=size,
            )
        root = tree.stored_root(store, cp.tree_size)
        if root != cp.root_hash:
            raise VerificationError(
                f"{where}: signed root {cp.root_hash.hex()} != recomputed root {root.hex()}",
                expected=cp.root_hash,
                computed=root,
            )
    return len(stored), stored[-1].tree_size


def verify_ledger(
    store: Store,
    key: Keys,
    *,
    progress: Progress | None = None,
    max_signing_delay_s: int = DEFAULT_MAX_DELAY_S,
    reference: bool = False,
) -> VerifyReport:
    """Verify the whole ledger (steps in the module docstring); raise at the first problem.

    Steps 1 and 2 run in the compiled core unless ``reference`` is true (then, and for a
    store the core cannot read, in the Python reference); the verdict, the seq and the
    message are the same either way.
    """
    if not reference:
        try:
            return _verify_ledger(store, key, progress, max_signing_delay_s, core=True)
        except _Disagreement:
            pass  # the core flagged what the reference finds good: the reference decides
    return _verify_ledger(store, key, progress, max_signing_delay_s, core=False)


def _verify_ledger(
    store: Store, key: Keys, progress: Progress | None, max_delay_s: int, *, core: bool
) -> VerifyReport:
    started = time.perf_counter()
    sizes = [cp.tree_size for cp in store.checkpoints()]
    found_receipts, removed = removed_ranges(store)
    run = _core_run(store, 0, None, sizes, max_delay_s, progress, removed=removed) if core else None
    if run is None:
        late = LateSigning(sizes, max_delay_s)
        records, record_bytes, absent = _check_records(store, progress, late=late, removed=removed)
        found = late.found
    else:
        if run.fault is not None:
            raise _explain_records(store, run.fault[0], None, removed)
        records, record_bytes, found, absent = run.records, run.bytes, run.late, run.absent
    latest = max(sizes, default=0)
    if latest > records:
        raise VerificationError(
            f"checkpoint at tree size {latest}: the ledger holds only {records} records; "
            f"seq {records} onwards is missing",
            records,
            expected=latest,
            computed=records,
        )
    if run is None or not run.tree_checked:
        _check_tree(store, records)
    elif run.tree_fault is not None:
        _check_tree(store, records)  # the reference words the failure...
        raise _Disagreement  # ...and, were it to find none, decides
    count, cp_size = _check_checkpoints(store, key, records)
    if found is not None:  # reported once the checkpoints it relies on are known good
        raise VerificationError(found.message(max_delay_s), found.seq)
    _check_receipt_digests(store, found_receipts)
    return VerifyReport(
        records - absent,
        record_bytes,
        time.perf_counter() - started,
        records,
        count,
        cp_size,
        absent,
        tuple(found_receipts),
    )


class _Disagreement(Exception):
    """The core flagged a record or node that the reference, run there, finds good."""


@dataclass(frozen=True)
class _CoreRun:
    """What the core found in steps 1 and 2 (see :func:`_core_run`)."""

    records: int
    bytes: int
    fault: tuple[int, str] | None
    tree_checked: bool
    tree_fault: tuple[int, str] | None
    late: LateRecord | None
    inclusion_checked: bool = False
    excluded: int | None = None
    #: Seqs passed without a row (removed; counted in ``records``, not in ``bytes``).
    absent: int = 0


def _core_run(
    store: Store,
    begin: int,
    end: int | None,
    sizes: list[int] | None,
    max_delay_s: int,
    progress: Progress | None,
    inclusion: tuple[int, bytes] | None = None,
    removed: Sequence[tuple[int, int]] = (),
) -> _CoreRun | None:
    """Steps 1 and 2 in the core: records ``[begin, end)`` (with ``sizes``, the checkpoint
    sizes, also the late signing of step 5) and, for the whole ledger, the tree; with
    ``inclusion`` (a signed tree size and root), on a SQLite ledger, also each leaf of
    the range proven into that root from stored nodes (``verify_range``).

    A seq without a row inside one of the ``removed`` ranges (``(first, last)``, inclusive,
    sorted: :meth:`otaudit.store.base.Store.removals`) is absent: passed (``records``
    counts it, ``absent`` too), its leaf still required, nothing else checked or proven.

    A SQLite ledger the core reads itself; other stores' rows are read here and fed to
    it. None: the core could not read the ledger (the reference then reads it, and says
    what is wrong).
    """
    if isinstance(store, SQLiteStore) and one_sqlite():
        try:
            records, nbytes, fault, tree_fault, late, excluded, absent = _core.verify_sqlite(
                read_uri(store.path),
                begin,
                end,
                sizes,
                max_delay_s,
                end is None,
                codec.MAX_RECORD_BYTES,
                progress,
                inclusion if end is not None else None,
                removed,
            )
        except RuntimeError:
            return None
        proved = inclusion is not None and end is not None
        return _CoreRun(
            records, nbytes, fault, end is None, tree_fault, _late(late), proved, excluded, absent
        )
    stream = _core.RecordStream(begin, sizes, max_delay_s, removed)
    # The core checks one batch (without the GIL, on a thread of its own) while the next
    # is read here. A batch goes with the leaves up to its last row; the leaves of a run
    # of absent seqs before it (or after the last row) are fed alone first, in pieces.
    with ExitStack() as streams, ThreadPoolExecutor(1) as checker:
        leaves = store.iter_level(0, begin)
        rows = store.iter_records(begin, end)
        for it in (leaves, rows):
            streams.callback(getattr(it, "close", lambda: None))
        checked = 0
        fed = begin  # begin + the leaves read: the idx after the last one read, if dense
        pending: tuple[Future[tuple[int, str] | None], int] | None = None
        while True:
            batch = [_row(rec) for rec in itertools.islice(rows, _FEED_BATCH)]
            fault = None
            if pending is not None:
                fault = pending[0].result()
                good = pending[1] if fault is None else fault[0]
                before, checked = checked, good - begin
                _tell(progress, begin, before, checked)
                if fault is not None:
                    break
            stop = _absent_end(removed, begin + checked)
            if batch:
                stop = min(stop, batch[0][0])
            elif end is not None:
                stop = min(stop, end)
            else:
                stop += 1  # and one leaf more: is one left over?
            while fault is None and fed < stop:
                alone = list(itertools.islice(leaves, min(stop - fed, _FEED_BATCH)))
                if not alone:
                    break
                fed += len(alone)
                fault = stream.feed([], alone)
            if fault is not None or not batch:
                break
            ahead = list(itertools.islice(leaves, max(batch[-1][0] + 1 - fed, 0)))
            fed += len(ahead)
            pending = checker.submit(stream.feed, batch, ahead), batch[-1][0] + 1
    records, nbytes, fault, late, absent = stream.finish(end)
    return _CoreRun(records, nbytes, fault, False, None, _late(late), absent=absent)


def _absent_end(removed: Sequence[tuple[int, int]], seq: int) -> int:
    """One past the removed seqs that follow on from ``seq`` (``seq`` itself when it is
    not removed); ``removed`` sorted, inclusive ``(first, last)`` ranges."""
    at = bisect.bisect_left(removed, seq, key=lambda r: r[1])  # the first with last >= seq
    while at < len(removed) and removed[at][0] <= seq:
        seq = removed[at][1] + 1
        at += 1
    return seq


_FEED_BATCH: Final = 4096


def one_sqlite() -> bool:
    """Whether the compiled core links the very SQLite library :mod:`sqlite3` uses.

    Only then does the core read a SQLite ledger itself: two copies of SQLite in one
    process do not see each other's POSIX locks, and closing a file in one drops the
    locks the other holds on it. A Python whose ``_sqlite3`` has SQLite built in (or a
    wheel with a copy of its own) gets the core's checks over rows read by Python.
    """
    try:
        import _sqlite3

        python_side = ctypes.PyDLL(_sqlite3.__file__).sqlite3_libversion
    except (ImportError, AttributeError, OSError):
        return False
    return ctypes.cast(python_side, ctypes.c_void_p).value == _core.sqlite_entry()


def _row(rec: StoredRecord) -> tuple[Any, ...]:
    kept = rec.resource
    part = None if kept is None else (kept.at, kept.hash, kept.body)
    return rec.seq, rec.sealed, rec.dedup_key, rec.columns, part


def _tell(progress: Progress | None, begin: int, before: int, after: int) -> None:
    """Report each multiple of 10,000 of the seq passed between ``before`` and ``after``
    records checked, as the reference does record by record."""
    if progress is None:
        return
    for seq in range((begin + before) // 10_000 * 10_000 + 10_000, begin + after + 1, 10_000):
        progress(seq - begin)


def _late(found: tuple[int, int, int, int, int] | None) -> LateRecord | None:
    return None if found is None else LateRecord(*found)


def _explain_records(
    store: Store, seq: int, end: int | None, removed: Sequence[Range] = ()
) -> VerificationError:
    """The reference's own failure at ``seq``, where the core found one in step 1.

    The reference runs from ``seq`` on and must fail there; if it passes that record
    instead, :class:`_Disagreement`.
    """

    def through(records: Iterator[StoredRecord]) -> Iterator[StoredRecord]:
        for rec in records:
            yield rec
            if rec.seq >= seq:
                raise _Disagreement

    with ExitStack() as streams:
        leaves = store.iter_level(0, seq)
        records = store.iter_records(seq, end)
        for it in (leaves, records):
            streams.callback(getattr(it, "close", lambda: None))
        try:
            _check_stream(leaves, through(records), None, seq, end, None, removed)
        except VerificationError as exc:
            return exc
    raise _Disagreement


def removed_ranges(store: Store) -> tuple[list[Receipt], list[Range]]:
    """The ledger's receipts and the seqs they cover (merged), after checking that each
    receipt names only earlier seqs, counts them right, and that the ``removals`` table
    (what the database lets be deleted) says no more than the receipts."""
    try:
        found = read_receipts(store)
    except ValueError as exc:
        raise VerificationError(f"{exc}: the receipt was altered") from exc
    by_seq: dict[int, Receipt] = {}
    for r in found:
        if r.ranges and r.ranges[-1][1] >= r.seq:
            raise VerificationError(
                f"seq {r.seq}: a receipt names seq {r.ranges[-1][1]}, which is not before it",
                r.seq,
            )
        if receipts.count(r.ranges) != r.count:
            raise VerificationError(
                f"seq {r.seq}: a receipt says {r.count} records but its ranges hold"
                f" {receipts.count(r.ranges)}",
                r.seq,
            )
        by_seq[r.seq] = r
    for m in store.removals():
        named = by_seq.get(m.receipt_seq)
        ranges = () if named is None else named.ranges
        at = bisect.bisect_right(ranges, (m.first, m.last)) - 1
        if at < 0 or not ranges[at][0] <= m.first <= m.last <= ranges[at][1]:
            raise VerificationError(
                f"seq {m.first}: the removals table lets seq {m.first}..{m.last} be deleted"
                f" under seq {m.receipt_seq}, which is no receipt naming them: the removals"
                " table was altered",
                m.first,
            )
    return found, receipts.merged(found)


def _overlaps(r: Receipt, begin: int, end: int) -> bool:
    return bool(r.ranges) and r.ranges[0][0] < end and r.ranges[-1][1] >= begin


def _check_receipt_digests(store: Store, found: Sequence[Receipt]) -> None:
    """Each receipt's digest equals the one over the (checked) leaves it names."""
    for r in found:
        computed = receipts.leaf_digest(store, r.ranges)
        if computed != r.leaf_digest:
            raise VerificationError(
                f"seq {r.seq}: the receipt's digest of the leaves it removed is {r.leaf_digest}"
                f" but the tree's leaves give {computed}: the receipt does not name what went",
                r.seq,
            )


def check_saved_checkpoint(store: Store, note: str, key: Keys) -> int:
    """Check the ledger against a checkpoint kept elsewhere; return its tree size.

    Run after :func:`verify_ledger` (so the stored nodes are known good).
    Catches what the ledger cannot show about itself: a truncated tail, a
    database rolled back to an older copy, and a ledger recomputed and
    re-signed with another key.
    """
    origin = store.meta("origin")
    history = history_for(store, key)
    try:
        saved = history.open_checkpoint(note, origin)
    except VerificationError as exc:
        raise VerificationError(
            f"saved checkpoint is not a checkpoint of this log signed by its key: {exc} "
            "(the log's key or origin changed, or the checkpoint belongs to another log)"
        ) from exc
    where = f"saved checkpoint at tree size {saved.tree_size}"
    size = store.tree_size()
    if saved.tree_size > size:
        raise VerificationError(
            f"{where}: the ledger holds only {size} records; seq {size} onwards is missing "
            "(truncated, or rolled back to an older copy)",
            size,
            expected=saved.tree_size,
            computed=size,
        )
    root = tree.stored_root(store, saved.tree_size)
    if root != saved.root_hash:
        raise VerificationError(
            f"{where}: signed root {saved.root_hash.hex()} != the ledger's root {root.hex()} "
            "at that size: the ledger was rewritten",
            expected=saved.root_hash,
            computed=root,
        )
    return saved.tree_size


def verify_range(
    store: Store,
    key: Keys,
    begin: int,
    end: int | None,
    *,
    progress: Progress | None = None,
    reference: bool = False,
) -> VerifyReport:
    """Verify records ``[begin, end)`` and their inclusion in the latest signed checkpoint.

    Each record's columns and leaf hash are rechecked (in the compiled core unless
    ``reference`` is true, as in :func:`verify_ledger`), and its leaf is proven
    into the signed root with an RFC 9162 inclusion proof built from stored
    nodes (path nodes shared by neighbouring records are computed once).
    """
    if not reference:
        try:
            return _verify_range(store, key, begin, end, progress, core=True)
        except _Disagreement:
            pass  # the core flagged what the reference finds good: the reference decides
    return _verify_range(store, key, begin, end, progress, core=False)


def _verify_range(
    store: Store,
    key: Keys,
    begin: int,
    end: int | None,
    progress: Progress | None,
    *,
    core: bool,
) -> VerifyReport:
    started = time.perf_counter()
    count, cp_size = _check_checkpoints(store, key, store.tree_size())
    root = store.checkpoints()[-1].root_hash
    end = cp_size if end is None else min(end, cp_size)
    previous: dict[tuple[int, int], bytes] = {}

    def included(seq: int, leaf: bytes) -> None:
        # Neighbouring records share most of their proof: reuse the previous record's
        # nodes (constant memory, one new node per record on average).
        nonlocal previous
        current = {
            (b, e): previous.get((b, e)) or tree.stored_range_hash(store, b, e)
            for b, e in merkle.inclusion_proof_nodes(seq, cp_size)
        }
        proof = list(current.values())
        previous = current
        try:
            merkle.verify_inclusion(leaf, seq, cp_size, proof, root)
        except VerificationError as exc:
            raise VerificationError(
                f"seq {seq}: not included in the checkpoint at tree size {cp_size}: {exc}", seq
            ) from exc

    # 1. Each record against its stored leaf; 2. each (now checked) leaf into the signed root.
    found_receipts, removed = removed_ranges(store)
    run = (
        _core_run(store, begin, end, None, 0, progress, (cp_size, root), removed=removed)
        if core
        else None
    )
    if run is None:
        checked, total_bytes, absent = _check_records(store, progress, begin, end, None, removed)
    elif run.fault is not None:
        raise _explain_records(store, run.fault[0], end, removed)
    else:
        checked, total_bytes, absent = run.records, run.bytes, run.absent
    if run is not None and run.inclusion_checked:
        if run.excluded is not None:  # the reference words it, or decides
            included(run.excluded, store.nodes([(0, run.excluded)])[0])
            raise _Disagreement
    else:
        for idx, leaf in store.iter_level(0, begin):
            if idx >= end:
                break
            included(idx, bytes(leaf))
    seconds = time.perf_counter() - started
    return VerifyReport(
        checked - absent,
        total_bytes,
        seconds,
        store.tree_size(),
        count,
        cp_size,
        absent,
        tuple(r for r in found_receipts if _overlaps(r, begin, end)),
    )
