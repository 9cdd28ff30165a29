"""The signer's saved checkpoint: its latest signed checkpoint, kept outside the database.

DESIGN invariant 10: ``otaudit serve`` keeps the latest checkpoint it signed in a file next
to its signing key, ``<key file>.checkpoint`` (``DATA/signing.key.checkpoint`` by default;
in the data directory when the key's own directory is read-only, see
:func:`otaudit.datadir.signing_key`), and signs only a tree that extends it consistently
(RFC 9162 §2.1.4; the check is in :class:`otaudit.checkpointer.Checkpointer`). Someone who can
write the database but not that file can then no longer have a rewritten, truncated or
rolled-back history signed.

The file holds the signed note exactly as signed (c2sp.org/tlog-checkpoint), so it is also
a checkpoint for ``otaudit verify --checkpoint``. :func:`save` writes it atomically (a
temporary file, fsync, rename, fsync of the directory); the signer saves a checkpoint here
before it stores it in the database, so a crash between the two leaves the file ahead of the
database, never behind.

Reading is strict. A file that is not a regular file, is larger than
:data:`MAX_FILE_BYTES` or cannot be read raises :class:`~otaudit.errors.ConfigError`;
content that is not a checkpoint of this log signed by its key raises
:class:`~otaudit.errors.VerificationError`. The small-file helpers here also serve the
pinned verifier key (:mod:`otaudit.datadir`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SAVED_CHECKPOINT_SUFFIX, VerifierKey
from otaudit.smallfile import read_small_file, write_atomic

MAX_FILE_BYTES: Final = 64 * 1024
"""Largest saved checkpoint read (one with 100 signature lines is about 10 KB)."""


def path_for(key_path: Path) -> Path:
    """Where the signer whose key is in ``key_path`` keeps its saved checkpoint."""
    return key_path.with_name(key_path.name + SAVED_CHECKPOINT_SUFFIX)


def write_file(path: Path, data: bytes, what: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically: temporary file, fsync, rename, fsync dir.

    Readers see the old content or the new, never a mix. Raises
    :class:`~otaudit.errors.ConfigError` naming ``what`` if any step fails.
    """
    try:
        write_atomic(path, data, mode)
    except OSError as exc:
        raise ConfigError(f"cannot write {what} {path}: {exc.strerror or exc}") from exc


def check_writable(path: Path) -> None:
    """Raise :class:`~otaudit.errors.ConfigError` unless a saved checkpoint can go at ``path``."""
    directory = path.parent
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot keep the signer's saved checkpoint {path}: directory {directory} "
            "is not writable"
        )


def parse(data: bytes | str, key: VerifierKey, origin: str | None) -> Checkpoint:
    """The checkpoint in a saved checkpoint's content, signed by ``key`` for log ``origin``.

    Raises :class:`~otaudit.errors.VerificationError` for anything else (see
    :func:`otaudit.checkpoint.open_checkpoint`).
    """
    return open_checkpoint(data, key, origin)


def load(path: Path, key: VerifierKey, origin: str | None) -> Checkpoint | None:
    """The checkpoint saved at ``path``, checked with ``key``; None if there is no file.

    Raises :class:`~otaudit.errors.ConfigError` if it cannot be read and
    :class:`~otaudit.errors.VerificationError` if it is not a checkpoint of this log signed
    by ``key`` (both name the file).
    """
    data = read_small_file(path, "saved checkpoint", MAX_FILE_BYTES)
    if data is None:
        return None
    try:
        return parse(data, key, origin)
    except VerificationError as exc:
        raise VerificationError(f"saved checkpoint {path}: {exc}") from exc


def save(path: Path, note: str) -> None:
    """Replace the saved checkpoint at ``path`` with the signed note ``note``, atomically."""
    write_file(path, note.encode("utf-8"), "the signer's saved checkpoint")
