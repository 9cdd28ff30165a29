"""Connecting to PostgreSQL, and saying what went wrong without leaking a password."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from otaudit.errors import ConfigError, StoreError

#: Every otaudit connection: its own schema first, durable commits, UTC timestamps.
_OPTIONS = "-c search_path=otaudit -c synchronous_commit=on -c timezone=UTC"


def redact_dsn(text: str) -> str:
    """``text`` (a DSN, or a message quoting one) with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


def check_dsn(dsn: str) -> None:
    """ConfigError unless psycopg can parse ``dsn``."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"--store {redact_dsn(dsn)!r} is not a valid PostgreSQL URL: {redact_dsn(str(exc))}"
        ) from exc


def message(exc: psycopg.Error) -> str:
    """The server's primary message, else the first line of the error, else its class."""
    primary = exc.diag.message_primary if exc.diag else None
    if primary:
        return primary
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def position(exc: psycopg.Error) -> str:
    """`` (at character N)`` when the server names where a statement went wrong."""
    at = exc.diag.statement_position if exc.diag else None
    return f" (at character {at})" if at else ""


def connect(dsn: str, *, readonly: bool, timeout_s: int) -> psycopg.Connection[Any]:
    """An autocommit connection with otaudit's session settings; StoreError if it fails."""
    options = _OPTIONS + (" -c default_transaction_read_only=on" if readonly else "")
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=timeout_s,
            options=options,
            application_name="otaudit",
        )
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {redact_dsn(message(exc))}"
        ) from exc
