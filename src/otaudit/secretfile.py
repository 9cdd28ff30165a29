"""Secrets kept in files: the redaction key, the webhook signing secret, header values.

A secret file is read only when it is a regular file that neither group nor others may
access, like the signing key (:meth:`otaudit.keys.SigningKey.load`): a secret that other
users can read is no longer a secret, and otaudit says so rather than use it. The file is
opened without blocking, so a FIFO named by mistake (or on purpose) is refused, not waited on.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Final

from otaudit.errors import ConfigError
from otaudit.smallfile import read_small_file, write_atomic

MIN_SECRET_BYTES: Final = 16
#: The most a secret file may hold (a key, or a few header lines).
MAX_SECRET_FILE_BYTES: Final = 64 * 1024


def read_private_file(path: Path, option: str) -> bytes:
    """The bytes of the secret file ``path``; ConfigError naming ``option`` and the file when
    it is missing, cannot be read, is not a regular file, is larger than 64 KiB, or allows
    any group or other access (mode 0600 or stricter is required)."""
    data = read_small_file(path, option, MAX_SECRET_FILE_BYTES, private=True)
    if data is None:
        raise ConfigError(f"{option} {path} does not exist")
    return data


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


def data_key(path: Path, what: str, nbytes: int, consequence: str) -> bytes:
    """The ``nbytes`` key kept as hexadecimal digits in ``path`` (a data directory's own
    key), created (0600) if there is none. ConfigError if the file is not a private regular
    file of ``2 * nbytes`` hexadecimal digits; ``consequence`` says what making a new one
    does."""
    raw = read_small_file(path, what, 1024, private=True)
    if raw is None:
        write_atomic(path, secrets.token_hex(nbytes).encode() + b"\n", 0o600)
        raw = read_small_file(path, what, 1024, private=True)
        if raw is None:
            raise ConfigError(f"{what} {path} vanished after it was written")
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != nbytes:
        raise ConfigError(
            f"{what} {path} must hold {2 * nbytes} hexadecimal digits;"
            f" remove it to make a new one ({consequence})"
        )
    return key
