"""Reading and writing the small files otaudit trusts: keys, secrets, the saved
checkpoint, the pin, a witness's checkpoints.

Each is opened without blocking and without following the caller into a
trap: anything but a regular file (a FIFO, a device, a directory) is
refused at once instead of waited on, a file larger than its limit is
refused instead of read whole, and a private file (a key, a secret) that
group or others may access is refused, because it is no longer private.
A file is written whole or not at all (:func:`write_atomic`, built from steps that a
caller with messages of its own can also take one by one).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from otaudit.errors import ConfigError


def read_small_file(path: Path, what: str, limit: int, *, private: bool = False) -> bytes | None:
    """The bytes of the regular file ``path``, or None if there is none.

    ``what`` names the file in messages. ConfigError for anything but a regular
    file, a file larger than ``limit`` bytes, an I/O error, and (``private``) a
    mode that allows any group or other access.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot open {what} {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if private and mode & 0o077:
            raise ConfigError(
                f"{what} {path} has mode {mode:04o}, which allows group or other access; "
                f"it must be 0600 or stricter (chmod 600 {path})"
            )
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if total > limit:
        raise ConfigError(f"{what} {path} is larger than {limit} bytes")
    return b"".join(chunks)


def write_synced(fd: int, data: bytes, mode: int) -> None:
    """Give the open file ``fd`` exactly ``mode``, write all of ``data``, fsync, close."""
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def open_temporary(path: Path, mode: int) -> tuple[int, Path]:
    """Create a new temporary file beside ``path`` (``.<name>.<random>.tmp``, ``mode``, not
    following links); return its open descriptor and its path (OSError)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    return os.open(tmp, flags, mode), tmp


def publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Give the written temporary file ``tmp`` its name ``path`` in one step (OSError).

    ``overwrite``: replace whatever is at ``path`` (a rename). Otherwise never: ``tmp`` is
    hard-linked to ``path``, which fails with FileExistsError if anything is there (even a
    dangling symbolic link); where hard links are unsupported it is renamed after a check.
    The caller removes ``tmp`` afterwards (it is gone after a rename).
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this file system: fall back to a checked rename.
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.rename(tmp, path)


def sync_directory(directory: Path) -> None:
    """Make ``directory``'s entries durable (fsync); nothing to do where a directory cannot
    be synced. OSError if it cannot be opened (its ``filename`` is set) or synced."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # not syncable here; nothing to do
            raise
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file (``mode``, whatever
    the umask; :func:`open_temporary`), fsync, :func:`publish` under ``path``, directory
    fsync. Readers see the old content or the new, never a mix. ``overwrite=False`` never
    replaces an existing file (FileExistsError). OSError; no temporary file is left."""
    fd, tmp = open_temporary(path, mode)
    try:
        write_synced(fd, data, mode)
        publish(tmp, path, overwrite=overwrite)
    finally:
        remove_temporary(tmp)
    sync_directory(path.parent)


def remove_temporary(tmp: Path) -> None:
    """Remove the temporary file ``tmp`` if it is still there (best effort: never raises)."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
