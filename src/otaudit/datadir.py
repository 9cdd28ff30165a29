"""The data directory: where the ledger and the signing key live, and how a store is chosen.

Layout of ``--data DIR`` (default ``./otaudit-data``)::

    DIR/ledger.db                 the SQLite ledger (the default store)
    DIR/signing.key               the log's Ed25519 signing key, mode 0600, in signed-note form
    DIR/signing.key.checkpoint    the latest checkpoint the server signed, kept outside the
                                  database (next to ``--key-file`` when the key is elsewhere;
                                  see :mod:`otaudit.signerstate`)
    DIR/verifier.key              the log's verifier key, pinned by ``otaudit key pin``
    DIR/signing.key.retired-<id>  a signing key retired by ``otaudit key rotate`` (kept, 0600)
    DIR/signing.key.next          the new key while a rotation is under way (see
                                  :mod:`otaudit.rotation`)

The log's origin (the first line of every checkpoint) is the signing key's
name; it is chosen on first start (``--origin``) and recorded in the ledger.

The verifier key recorded in the ledger is only the database's word: whoever can
write the database can replace it along with the history it signs. After a key rotation
it stays the log's original key; the key in force comes from the key history
(:mod:`otaudit.keyhistory`). :func:`log_key`
says what confirms the key it returns (``--key``, the pinned key, or the signing key).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from otaudit import defaults, keyhistory, signerstate
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.smallfile import read_small_file
from otaudit.store.base import Store
from otaudit.store.sqlite import SQLiteStore

DEFAULT_DATA: Final = defaults.DATA_DIR
LEDGER_FILE: Final = "ledger.db"
KEY_FILE: Final = "signing.key"
PIN_FILE: Final = "verifier.key"
_MAX_PIN_BYTES: Final = 4096

log = logging.getLogger("otaudit.datadir")


def check(data: Path, *, create: bool) -> Path:
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


def sqlite_path(data: Path, store_url: str | None) -> Path:
    """The SQLite ledger file named by ``--store`` (default ``DATA/ledger.db``); ConfigError
    for a URL that names no SQLite file."""
    return _sqlite_path(data, store_url)


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
    """Load the log's signing key, creating it (and recording the origin) on first start.

    The signer's saved checkpoint (:mod:`otaudit.signerstate`) goes next to the key file,
    or in ``DATA/signing.key.checkpoint`` when the key's directory is read-only (a secret
    mount shared by several nodes).
    """
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
    if not os.access(path.parent, os.W_OK | os.X_OK):
        key.saved_checkpoint = signerstate.path_for(data / KEY_FILE)
        log.info(
            "signing key %s is in a read-only directory: the latest signed checkpoint is kept "
            "in %s",
            path,
            key.saved_checkpoint,
        )
    if origin is not None and origin != key.name:
        raise ConfigError(f"--origin {origin!r} does not match the log's origin {key.name!r}")
    if recorded is None:
        store.set_meta("origin", key.name)
        store.set_meta("verifier_key", key.verifier_key())
        keys = [key.verifier()]
    else:
        keys = _check_in_force(key, path, store, recorded)
    pinned = pinned_key(data / PIN_FILE)
    if pinned is not None and pinned not in keys:
        raise ConfigError(
            f"signing key {path} is not the key pinned in {data / PIN_FILE} ({pinned})"
        )
    return key


def _check_in_force(key: SigningKey, path: Path, store: Store, recorded: str) -> list[VerifierKey]:
    """ConfigError unless ``key`` is the key in force of the ledger's key history (the
    recorded key, or the newest of its rotations); return the history's keys."""
    if recorded != key.name:
        raise ConfigError(
            f"signing key {path} ({key.name!r}) is not the key of this ledger ({recorded!r})"
        )
    history = keyhistory.load_history(store)
    if history.current == key.verifier():
        return history.keys
    retired = [r for r in history.rotations if r.old == key.verifier()]
    if retired:
        raise ConfigError(
            f"signing key {path} was retired by the key rotation at seq {retired[0].seq}; the "
            f"key in force is {history.current} (an unfinished `otaudit key rotate` left it in "
            f"{path.with_name(path.name + keyhistory.NEXT_SUFFIX)})"
        )
    raise ConfigError(
        f"signing key {path} ({key.name!r}) is not the key of this ledger ({recorded!r})"
    )


@dataclass(frozen=True)
class LogKey:
    """The log's verifier key and what confirmed it (None: only the ledger's own record)."""

    key: VerifierKey
    confirmed_by: str | None


def pinned_key(path: Path) -> VerifierKey | None:
    """The verifier key pinned in ``path`` (one line, ``otaudit key pin``); None if no file.

    ConfigError if the file cannot be read or does not hold one verifier key.
    """
    raw = read_small_file(path, "pinned verifier key", _MAX_PIN_BYTES)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"pinned verifier key {path} is not UTF-8 text") from None
    try:
        return VerifierKey.parse(text.removesuffix("\n"))
    except ConfigError as exc:
        raise ConfigError(f"pinned verifier key {path}: {exc}") from None


def pin_key(path: Path, key: VerifierKey, chain: Sequence[VerifierKey] = ()) -> bool:
    """Write ``key`` to ``path`` (mode 0644, atomically); False if it already pins ``key``.

    VerificationError if ``path`` pins another key: a pin is never replaced silently, except
    by a later key of ``chain`` (the log's checked key history, oldest first).
    """
    pinned = pinned_key(path)
    if pinned == key:
        return False
    forward = pinned in chain and key in chain and chain.index(key) > chain.index(pinned)
    if pinned is not None and not forward:
        raise VerificationError(
            f"{path} already pins {pinned}; if the log's key really changed, remove that file first"
        )
    signerstate.write_file(path, f"{key}\n".encode(), "pinned verifier key")
    return True


def log_key(data: Path, store: Store, key_text: str | None) -> LogKey:
    """The log's verifier key and what confirms it, in this order:

    1. ``--key`` (``key_text``), as given;
    2. the key pinned in ``DATA/verifier.key``;
    3. the signing key ``DATA/signing.key``, when this user can read it;
    4. otherwise the key the ledger records, unconfirmed (``confirmed_by`` None).

    A pinned or signing key that differs from the one the ledger records is a
    VerificationError: the recorded key was replaced. Only for a store outside the data
    directory (``--store postgresql://...`` beside the ``./otaudit-data`` of an earlier
    SQLite ledger, say) is a key of another name taken to be another log's: it confirms
    nothing and is passed over. ConfigError if the ledger records no key and none is given.
    """
    if key_text is not None:
        return LogKey(VerifierKey.parse(key_text), "--key")
    recorded = store.meta("verifier_key")
    if recorded is None:
        raise ConfigError("the ledger has no verifier key recorded; pass --key")
    # In the data directory's own ledger any key there speaks for this log; beside
    # another store, a key of another name is another log's.
    name = None if _own_ledger(data, store) else VerifierKey.parse(recorded).name
    pin_path = data / PIN_FILE
    pinned = pinned_key(pin_path)
    if pinned is not None and name is not None and pinned.name != name:
        pinned = None
    if pinned is not None:
        if str(pinned) != recorded and not _in_history(store, pinned):
            raise VerificationError(
                f"the ledger's verifier key {recorded} is not the key pinned in {pin_path} "
                f"({pinned}): the key in the database was replaced, or the pin belongs to "
                "another log"
            )
        return LogKey(pinned, f"the key pinned in {pin_path}")
    key_path = data / KEY_FILE
    own = None
    if key_path.exists() and os.access(key_path, os.R_OK):
        own = SigningKey.load(key_path).verifier()
        own = None if name is not None and own.name != name else own
    if own is not None:
        if str(own) != recorded and not _in_history(store, own):
            raise VerificationError(
                f"the ledger's verifier key {recorded} is not the key of the signing key "
                f"{key_path} ({own}): the key in the database was replaced, or the signing "
                "key belongs to another log"
            )
        return LogKey(own, f"the signing key {key_path}")
    return LogKey(VerifierKey.parse(recorded), None)


def _in_history(store: Store, key: VerifierKey) -> bool:
    """Whether ``key`` is a key of the ledger's (checked) key history: a rotation brought it in."""
    return key in keyhistory.load_history(store).keys


def require_ledger(data: Path) -> None:
    """ConfigError unless ``data`` holds a SQLite ledger: only ``serve`` and ``migrate``
    make one, so that a mistyped ``--data`` leaves nothing behind."""
    if data.is_dir() and (data / LEDGER_FILE).exists():
        check(data, create=False)
    else:
        raise ConfigError(
            f"no ledger in {data}: start `otaudit serve --data {data}` first, or make one with "
            f"`otaudit migrate --data {data}` (to create tokens before the server first listens)"
        )


def _own_ledger(data: Path, store: Store) -> bool:
    """Whether ``store`` is the SQLite ledger inside ``data``."""
    return isinstance(store, SQLiteStore) and store.path.resolve() == (data / LEDGER_FILE).resolve()


def unconfirmed_message(data: Path, key: VerifierKey) -> str:
    """Why a key that only the ledger vouches for is not used without --trust-stored-key."""
    return (
        f"the log's verifier key cannot be confirmed: the ledger records {key}, but no --key "
        f"was given, no key is pinned in {data / PIN_FILE}, and the signing key "
        f"{data / KEY_FILE} is not readable here. Whoever can write the database can replace "
        "that key together with the history it signs. Get the key from the log's operator "
        "and pass --key, or pin it once (`otaudit key pin --key KEY`), or pass "
        "--trust-stored-key to take the ledger's word for it"
    )


def unconfirmed_warning(key: VerifierKey) -> str:
    """The stderr line of a command told to use a key only the ledger vouches for."""
    return (
        f"otaudit: warning: {key} is the verifier key the ledger records; it is not confirmed "
        "by a pinned key or the signing key (--trust-stored-key)"
    )


def verifier_key(data: Path, store: Store, key_text: str | None) -> VerifierKey:
    """The key to check checkpoints with (:func:`log_key`), confirmed or not."""
    return log_key(data, store, key_text).key
