"""Secrets kept in files: the redaction key, the webhook signing secret, header values.

A secret file is read only when it is a regular file that neither group nor others may
access, like the signing key (:meth:`otaudit.keys.SigningKey.load`): a secret that other
users can read is no longer a secret, and otaudit says so rather than use it. The file is
opened without blocking, so a FIFO named by mistake (or on purpose) is refused, not waited on.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from otaudit.errors import ConfigError

MIN_SECRET_BYTES: Final = 16
#: The most a secret file may hold (a key, or a few header lines).
MAX_SECRET_FILE_BYTES: Final = 64 * 1024


def read_private_file(path: Path, option: str) -> bytes:
    """The bytes of the secret file ``path``; ConfigError naming ``option`` and the file when
    it cannot be read, is not a regular file, is larger than 64 KiB, or allows any group or
    other access (mode 0600 or stricter is required)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{option} {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{option} {path} has mode {mode:04o}, which allows group or other access; "
                f"it must be 0600 or stricter (chmod 600 {path})"
            )
        if st.st_size > MAX_SECRET_FILE_BYTES:
            raise ConfigError(
                f"{option} {path} is {st.st_size} bytes; a secret file holds at most "
                f"{MAX_SECRET_FILE_BYTES}"
            )
        data = b""
        while len(data) < st.st_size and (chunk := os.read(fd, st.st_size - len(data))):
            data += chunk
        return data
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def read_secret(path: Path, option: str) -> bytes:
    """The secret in ``path`` (surrounding whitespace removed), read by
    :func:`read_private_file`; ConfigError naming the option also when it holds fewer than
    16 bytes."""
    secret = read_private_file(path, option).strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{option} {path}: {len(secret)} bytes; use at least {MIN_SECRET_BYTES} random "
            "bytes (e.g. `head -c 32 /dev/urandom | base64`)"
        )
    return secret
