"""Reading and writing the small files otaudit trusts: keys, secrets, the saved
checkpoint, the pin, a witness's checkpoints.

Each is opened without blocking and without following the caller into a
trap: anything but a regular file (a FIFO, a device, a directory) is
refused at once instead of waited on, a file larger than its limit is
refused instead of read whole, and a private file (a key, a secret) that
group or others may access is refused, because it is no longer private.
A file is written whole or not at all (:func:`write_atomic`).
"""

from __future__ import annotations

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


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temporary file (``mode``, whatever the umask), fsync,
    rename, directory fsync. Readers see the old content or the new, never a mix (OSError)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, mode)
    try:
        write_synced(fd, data, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # not syncable here; nothing to do
            raise
    finally:
        os.close(dir_fd)
