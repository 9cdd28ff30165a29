"""Secrets kept in files (the redaction key, the webhook signing secret)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from otaudit.errors import ConfigError

MIN_SECRET_BYTES: Final = 16


def read_secret(path: Path, option: str) -> bytes:
    """The secret in ``path`` (surrounding whitespace removed); ConfigError naming the option
    when the file cannot be read or holds fewer than 16 bytes."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror}") from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{option} {path}: {len(secret)} bytes; use at least {MIN_SECRET_BYTES} random "
            "bytes (e.g. `head -c 32 /dev/urandom | base64`)"
        )
    return secret
