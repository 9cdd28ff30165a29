"""Reading the small files otaudit trusts: keys, secrets, the saved checkpoint, the pin.

Each is opened without blocking and without following the caller into a
trap: anything but a regular file (a FIFO, a device, a directory) is
refused at once instead of waited on, a file larger than its limit is
refused instead of read whole, and a private file (a key, a secret) that
group or others may access is refused, because it is no longer private.
"""

from __future__ import annotations

import os
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
