"""A consistent copy of a SQLite ledger, taken while the server writes (``otaudit backup``).

The copy is a directory laid out like a data directory, holding only what can be handed on::

    OUT/ledger.db                 the ledger, copied with the SQLite online backup API
    OUT/verifier.key              the log's verifier key, as ``otaudit key pin`` writes it
    OUT/signing.key.checkpoint    the checkpoint the server saved outside the database, when
                                  it has one (see :mod:`otaudit.signerstate`)

and never the signing key, so ``otaudit verify --data OUT`` checks the copy and ``serve``
cannot run on it: a copy is for reading and checking, never for serving (a second signer
would fork the log). :func:`backup_ledger` works in five steps:

1. ``OUT`` is opened as a private output directory (:func:`otaudit.outdir.open_output_dir`:
   created 0700, files 0600, an existing non-empty, foreign or linked directory refused).
2. The saved checkpoint is read *before* the database is copied: the server saves a
   checkpoint only for records it has committed, so the copy holds at least its tree.
3. The ledger is copied page by page into ``ledger.db.partial`` through a connection opened
   read-only. In WAL mode (the server's) the copy reads from one snapshot, held across the
   steps, so a busy writer neither waits for it nor makes it start again.
4. The copy is opened like any ledger and verified in full (:func:`otaudit.verify.verify_ledger`)
   with the log's verifier key, and checked against the saved checkpoint.
5. Only then are the key files written and the copy renamed to ``ledger.db``. On any failure
   (a full disk, an unwritable directory, a copy that does not verify) everything written
   is removed and nothing is presented as a copy.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from otaudit import datadir, signerstate
from otaudit.errors import ConfigError, OtauditError, StoreError, VerificationError
from otaudit.keys import VerifierKey
from otaudit.outdir import OutputDir, open_output_dir
from otaudit.smallfile import read_small_file
from otaudit.store.sqlite import SQLiteStore
from otaudit.store.sqlite_query import read_uri
from otaudit.verify import Progress, check_saved_checkpoint, verify_ledger

PARTIAL_SUFFIX: Final = ".partial"
#: Pages copied per step (4 MiB of 1 KiB pages at the least; 16 MiB at SQLite's 4 KiB).
STEP_PAGES: Final = 4096
_SIDECARS: Final = ("-journal", "-wal", "-shm")
POSTGRES_REFUSAL: Final = (
    "otaudit backup copies a SQLite ledger; back up a PostgreSQL ledger with pg_basebackup "
    "or pg_dump, and each node's data directory apart (see docs/operations.md, Backups)"
)


@dataclass(frozen=True)
class BackupReport:
    """What :func:`backup_ledger` wrote and checked."""

    out: Path
    ledger_bytes: int
    records: int
    checkpoints: int
    checkpoint_size: int
    checkpoint_root: bytes | None
    saved_checkpoint_size: int | None
    key: VerifierKey
    seconds: float

    @property
    def files(self) -> tuple[str, ...]:
        """The files in the copy."""
        saved = () if self.saved_checkpoint_size is None else (SAVED_CHECKPOINT_FILE,)
        return (datadir.LEDGER_FILE, datadir.PIN_FILE, *saved)


#: The name of the saved checkpoint in the copy, as in a data directory.
SAVED_CHECKPOINT_FILE: Final = signerstate.path_for(Path(datadir.KEY_FILE)).name


def backup_ledger(
    ledger: Path, key: VerifierKey, saved_checkpoint: Path, out: Path,
    *, progress: Progress | None = None,
) -> BackupReport:  # fmt: skip
    """Copy the SQLite ledger at ``ledger`` into the new directory ``out`` and verify the copy
    with ``key`` (steps in the module docstring). ``saved_checkpoint`` is where the server
    keeps its saved checkpoint (absent: none is copied).

    Raises UnsafeOutputError for an unusable ``out`` (nothing written), StoreError when the
    copy cannot be written (the disk is full, say), VerificationError when it does not verify;
    in every case nothing is left in ``out``.

    ``progress`` (optional) is called with the records of the copy verified so far, ending
    at its size.
    """
    started = time.perf_counter()
    if not ledger.is_file():
        raise ConfigError(
            f"no ledger at {ledger}: start `otaudit serve` with this data directory first"
        )
    directory = open_output_dir(out)
    try:
        saved = read_small_file(saved_checkpoint, "saved checkpoint", signerstate.MAX_FILE_BYTES)
        partial = datadir.LEDGER_FILE + PARTIAL_SUFFIX
        _copy(ledger, directory, partial)
        report = _check(directory, partial, key, saved, started, progress)
        _write(directory, datadir.PIN_FILE, f"{key}\n".encode())
        if saved is not None:
            _write(directory, SAVED_CHECKPOINT_FILE, saved)
        os.rename(partial, datadir.LEDGER_FILE, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
        directory.sync()
    except BaseException:
        _remove_sidecars(directory, datadir.LEDGER_FILE + PARTIAL_SUFFIX)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(datadir.LEDGER_FILE, dir_fd=directory.fd)
        directory.discard()
        raise
    finally:
        directory.close()
    return report


def _copy(ledger: Path, directory: OutputDir, name: str) -> None:
    """Copy the ledger into ``directory/name`` (created 0600 beforehand) with the online
    backup API, then make the copy one self-contained file (rollback journal, not WAL)."""
    target = directory.path / name
    with directory.create(name) as created:
        identity = os.fstat(created.fileno())
    try:
        source = sqlite3.connect(read_uri(ledger), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the ledger {ledger} to copy it: {exc}") from exc
    try:
        source.execute("PRAGMA busy_timeout = 10000")
        source.execute("PRAGMA query_only = ON")
        wal = source.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if wal:  # one snapshot for every step: the writer goes on, the copy never restarts
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            source.backup(copy, pages=STEP_PAGES, sleep=0)
            copy.execute("PRAGMA journal_mode = DELETE").fetchone()
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot write the copy {target}: {exc}{_space(ledger, directory)}"
        ) from exc
    finally:
        source.close()
    written = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
    if (written.st_dev, written.st_ino) != (identity.st_dev, identity.st_ino):
        raise ConfigError(f"{target} was replaced while the ledger was copied into it")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory.fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _space(ledger: Path, directory: OutputDir) -> str:
    """The room the copy needs and the room there is, for a failed write's message."""
    try:
        free = os.statvfs(directory.fd)
        needed = ledger.stat().st_size
    except OSError:
        return ""
    available = free.f_bavail * free.f_frsize
    return f" ({available / 1e6:,.1f} MB free there; the ledger is {needed / 1e6:,.1f} MB)"


def _check(
    directory: OutputDir, name: str, key: VerifierKey, saved: bytes | None, started: float,
    progress: Progress | None,
) -> BackupReport:  # fmt: skip
    """Verify the copy in full, and against the saved checkpoint when there is one."""
    path = directory.path / name
    try:
        store = SQLiteStore(path, readonly=True, migrate=False)
    except OtauditError as exc:
        raise StoreError(f"the copy {path} cannot be opened: {exc}") from exc
    try:
        try:
            report = verify_ledger(store, key, progress=progress)
            if progress is not None:
                progress(report.records)
            saved_size = None
            if saved is not None:
                saved_size = check_saved_checkpoint(store, saved.decode("utf-8", "replace"), key)
        except VerificationError as exc:
            raise VerificationError(
                f"the copy does not verify: {exc}", exc.seq, expected=exc.expected,
                computed=exc.computed,
            ) from exc  # fmt: skip
        latest = store.latest_checkpoint()
    finally:
        store.close()
    size = os.stat(name, dir_fd=directory.fd).st_size
    root = None if latest is None else latest.root_hash
    return BackupReport(directory.path, size, report.records, report.checkpoints,
                        report.checkpoint_size, root, saved_size, key,
                        time.perf_counter() - started)  # fmt: skip


def _write(directory: OutputDir, name: str, data: bytes) -> None:
    """Write one small file of the copy (0600), durably."""
    path = directory.path / name
    try:
        with directory.create(name) as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _remove_sidecars(directory: OutputDir, name: str) -> None:
    """Remove what SQLite may have left beside the copy (its journal, WAL and index)."""
    for suffix in _SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name + suffix, dir_fd=directory.fd)
