"""The witness directory: the files a log writes for its witness to cosign.

A witness directory (``otaudit serve --witness-dir DIR``) holds ``checkpoint.<size>`` (the
signed note), ``proof.<size>`` (the consistency proof from the previous checkpoint written
there, JSON ``{"size1", "size2", "hashes"}``) and, once cosigned, ``cosigned.<size>``.

:class:`ConsistencyProof` is the JSON form of ``proof.<size>``, :func:`export_checkpoint`
writes a checkpoint and its proof there (``otaudit serve --witness-dir``), and every file is
written with :func:`write_atomic`. :class:`Refused` is the error a witness raises for what it
will not cosign, a malformed ``proof.<size>`` included.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from otaudit import merkle
from otaudit.errors import VerificationError
from otaudit.smallfile import write_atomic


class Refused(VerificationError):
    """The witness refuses a checkpoint: unknown log, bad signature, rollback or fork."""


@dataclass(frozen=True)
class ConsistencyProof:
    """A consistency proof between tree sizes, as ``proof.<size>`` and ``otaudit prove`` hold."""

    size1: int
    size2: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> bytes:
        """``{"size1": ..., "size2": ..., "hashes": [hex, ...]}``."""
        doc = {"size1": self.size1, "size2": self.size2, "hashes": [h.hex() for h in self.hashes]}
        return orjson.dumps(doc) + b"\n"

    @classmethod
    def parse(cls, data: bytes | str) -> ConsistencyProof:
        """Parse the JSON form (other members are ignored); :class:`Refused` if malformed."""
        try:
            doc: Any = orjson.loads(data)
            size1, size2, hashes = doc["size1"], doc["size2"], doc["hashes"]
            if not all(type(s) is int and s >= 0 for s in (size1, size2)) or size1 > size2:
                raise ValueError("size1 and size2 must be integers with 0 <= size1 <= size2")
            if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
                raise ValueError("hashes must be a list of hex strings")
            raw = tuple(bytes.fromhex(h) for h in hashes)
            if any(len(h) != merkle.HASH_SIZE for h in raw):
                raise ValueError("every hash must be 32 bytes")
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            raise Refused(f"malformed consistency proof: {exc}") from None
        return cls(size1, size2, raw)


def export_checkpoint(directory: Path, note: str, proof: ConsistencyProof) -> None:
    """Write ``proof.<size>`` then ``checkpoint.<size>`` into a witness directory (OSError,
    also for a directory :func:`check_witness_dir` refuses)."""
    check_witness_dir(directory)
    write_atomic(directory / f"proof.{proof.size2}", proof.to_json())
    write_atomic(directory / f"checkpoint.{proof.size2}", note.encode("utf-8"))


def check_witness_dir(directory: Path) -> None:
    """Create the witness directory if absent, else check that it is one files may be written
    to. Its files are public (signed checkpoints and proofs, mode 0644, for a witness that may
    run under another account), but no one else may plant or redirect them: a symbolic link,
    anything but a directory, and a directory any user may write to (mode o+w) are refused
    with an OSError that says why."""
    try:
        st = directory.lstat()
    except FileNotFoundError:
        directory.mkdir(parents=True)
        st = directory.lstat()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        reason = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        reason = "is not a directory"
    elif mode & stat.S_IWOTH:
        reason = f"has mode {mode:04o}: any user may write to it"
    else:
        return
    raise OSError(errno.EPERM, f"witness directory {directory} {reason}", os.fspath(directory))
