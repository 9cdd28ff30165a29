"""The data directory: where the ledger and the signing key live, and how a store is chosen.

Layout of ``--data DIR`` (default ``./otaudit-data``)::

    DIR/ledger.db      the SQLite ledger (the default store)
    DIR/signing.key    the log's Ed25519 signing key, mode 0600, in signed-note form

The log's origin (the first line of every checkpoint) is the signing key's
name; it is chosen on first start (``--origin``) and recorded in the ledger.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Final

from otaudit.checkpoint import SigningKey, VerifierKey
from otaudit.errors import ConfigError
from otaudit.store.base import Store
from otaudit.store.sqlite import SQLiteStore

DEFAULT_DATA: Final = Path("otaudit-data")
LEDGER_FILE: Final = "ledger.db"
KEY_FILE: Final = "signing.key"

log = logging.getLogger("otaudit.datadir")


def prepare(data: Path, *, create: bool) -> Path:
    """Check (and with ``create``, make) a usable data directory; ConfigError says what is wrong."""
    if data.exists() and not data.is_dir():
        raise ConfigError(f"data directory {data} exists and is not a directory")
    if not data.exists():
        if not create:
            raise ConfigError(
                f"data directory {data} does not exist; start `otaudit serve --data {data}` first"
            )
        try:
            data.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise ConfigError(f"cannot create data directory {data}: {exc.strerror}") from exc
    if create:
        try:
            with tempfile.TemporaryFile(dir=data):
                pass
        except OSError as exc:
            raise ConfigError(f"data directory {data} is not writable: {exc.strerror}") from exc
    return data


def open_store(data: Path, store_url: str | None, *, readonly: bool, migrate: bool = True) -> Store:
    """Open the store named by ``--store`` (default: the SQLite ledger inside ``data``).

    A writable store gets its pending migrations when all are safe online
    (``migrate``); read-only stores must already be at the current version.
    """
    if store_url is not None and store_url.startswith(("postgresql://", "postgres://")):
        from otaudit.store.postgres import open_postgres  # psycopg loads only when used

        store: Store = open_postgres(store_url, readonly=readonly)
    else:
        store = SQLiteStore(_sqlite_path(data, store_url), readonly=readonly, migrate=False)
    if not readonly and migrate:
        try:
            store.migrate(online_only=True)
        except BaseException:
            store.close()
            raise
    return store


def _sqlite_path(data: Path, store_url: str | None) -> Path:
    if store_url is None:
        return data / LEDGER_FILE
    if store_url.startswith("sqlite:///"):
        # sqlite:///abs/path and sqlite:////abs/path both name /abs/path.
        return Path("/" + store_url.removeprefix("sqlite:///").lstrip("/"))
    if store_url.startswith(("sqlite:", "file:")):
        return Path(store_url.split(":", 1)[1])
    raise ConfigError(
        f"--store {store_url!r} is not a store URL; expected sqlite:///PATH or postgresql://..."
    )


def default_origin() -> str:
    """A unique log origin for a new ledger: ``otaudit/<host>/<8 random hex digits>``."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-.") or "host"
    return f"otaudit/{host}/{secrets.token_hex(4)}"


def signing_key(data: Path, store: Store, origin: str | None, key_file: Path | None) -> SigningKey:
    """Load the log's signing key, creating it (and recording the origin) on first start."""
    path = key_file or data / KEY_FILE
    recorded = store.meta("origin")
    if path.exists():
        key = SigningKey.load(path)
    elif recorded is not None:
        raise ConfigError(
            f"the ledger belongs to log {recorded!r} but its signing key {path} is missing"
        )
    else:
        key = SigningKey.generate(origin or default_origin())
        key.save(path)
        log.warning(
            "new log %r: signing key written to %s; keep a copy of its verifier key "
            "out of this machine's reach: %s",
            key.name,
            path,
            key.verifier_key(),
        )
    if origin is not None and origin != key.name:
        raise ConfigError(f"--origin {origin!r} does not match the log's origin {key.name!r}")
    if recorded is None:
        store.set_meta("origin", key.name)
        store.set_meta("verifier_key", key.verifier_key())
    elif recorded != key.name or store.meta("verifier_key") != key.verifier_key():
        raise ConfigError(
            f"signing key {path} ({key.name!r}) is not the key of this ledger ({recorded!r})"
        )
    return key


def verifier_key(data: Path, store: Store, key_text: str | None) -> VerifierKey:
    """The key to check checkpoints with: ``--key``, else the ledger's recorded key."""
    if key_text is not None:
        return VerifierKey.parse(key_text)
    recorded = store.meta("verifier_key")
    if recorded is None:
        raise ConfigError("the ledger has no verifier key recorded; pass --key")
    key_path = data / KEY_FILE
    if key_path.exists() and os.access(key_path, os.R_OK):
        own = SigningKey.load(key_path).verifier_key()
        if own != recorded:
            raise ConfigError(f"signing key {key_path} does not match the ledger's verifier key")
    return VerifierKey.parse(recorded)
