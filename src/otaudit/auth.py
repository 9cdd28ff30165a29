"""API tokens and their scopes: who may send (``ingest``), read (``read``) or watch (``admin``).

A token is ``otaudit_<id>_<secret>``: the 12-hex-digit id names it in lists,
logs and read records; the store keeps only the SHA-256 of the whole text
(tokens are 32 random bytes, so a fast hash is enough). Tokens are created,
listed and revoked with ``otaudit token``; every node re-reads the token
table every ``refresh_s`` seconds, so a new or revoked token takes effect on
all of them within that time.

Once any token has been created (revoked ones count), every request to
every listener needs a valid token with the endpoint's scope. Clients send
it as ``Authorization: Bearer <token>`` (HTTP) or the ``authorization``
metadata (gRPC).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Final

from otaudit.errors import ConfigError, Forbidden, OtauditError, Unauthenticated
from otaudit.store.base import Store, StoredToken
from otaudit.textsafety import log_text

log = logging.getLogger(__name__)

SCOPES: Final = ("ingest", "read", "admin")
#: How often every node reads the token table again.
REFRESH_S: Final = 2.0
_TOKEN_RE: Final = re.compile(r"otaudit_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


def token_hash(text: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(text.encode()).hexdigest()


def new_token(name: str, scopes: tuple[str, ...]) -> tuple[str, StoredToken]:
    """A fresh token's text (shown once) and the row to store."""
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise ConfigError(f"scopes must be among {', '.join(SCOPES)}, got {', '.join(scopes)!r}")
    token_id = secrets.token_hex(6)
    text = f"otaudit_{token_id}_{secrets.token_urlsafe(32)}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    row = StoredToken(token_id, name or token_id, ",".join(dict.fromkeys(scopes)),
                      token_hash(text), now, None)  # fmt: skip
    return text, row


def bearer(header: str | None) -> str | None:
    """The token in an ``Authorization`` value (None if there is no header)."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return value.strip()


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the token's id and name, or nobody when auth is off."""

    token_id: str | None
    name: str


ANONYMOUS: Final = Caller(None, "anonymous")


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks tokens against the store's token table, re-read every ``refresh_s`` seconds."""

    def __init__(self, load: Store, refresh_s: float = REFRESH_S) -> None:
        self._store = load
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._tokens: dict[str, StoredToken] = {}
        self._loaded_at = -1e9  # never read yet
        self.reload()

    def reload(self) -> None:
        """Read the token table now (StoreError if the store cannot say); log what changed
        since the last reading (not at the first)."""
        tokens = {t.token_id: t for t in self._store.tokens()}
        with self._lock:
            before, first = self._tokens, self._loaded_at < 0
            self._tokens = tokens
            self._loaded_at = time.monotonic()
        if not first:
            _log_changes(before, tokens)

    def watch(self, stop: threading.Event) -> None:
        """Read the table every ``refresh_s`` seconds in a thread of its own until ``stop``,
        so that a change is logged when it happens, not at the next request."""

        def run() -> None:
            while not stop.wait(self._refresh_s):
                self._current()

        threading.Thread(target=run, name="otaudit-tokens", daemon=True).start()

    def _current(self) -> dict[str, StoredToken]:
        if time.monotonic() - self._loaded_at > self._refresh_s:
            with contextlib.suppress(OtauditError):  # keep the last table while the store is away
                self.reload()
        with self._lock:
            return self._tokens

    @property
    def required(self) -> bool:
        """Whether any token exists, so that every request needs one."""
        return bool(self._current())

    def check(self, text: str | None, scope: str) -> Caller:
        """The caller presenting ``text`` if it may use ``scope`` (Unauthenticated, Forbidden)."""
        tokens = self._current()
        if not tokens:
            return ANONYMOUS
        if text is None:
            raise Unauthenticated("this endpoint needs a token: Authorization: Bearer <token>")
        match = _TOKEN_RE.fullmatch(text)
        if match is None:
            raise Unauthenticated("malformed token")
        token = tokens.get(match[1])
        if token is None or not hmac.compare_digest(token.token_hash, token_hash(text)):
            raise Unauthenticated("unknown token")
        if token.revoked_at is not None:
            raise Unauthenticated(f"token {token.token_id} was revoked at {token.revoked_at}")
        if scope not in token.scopes.split(","):
            raise Forbidden(f"token {token.token_id} lacks the {scope!r} scope")
        return Caller(token.token_id, token.name)


def _log_changes(before: dict[str, StoredToken], after: dict[str, StoredToken]) -> None:
    """Say in the log which tokens a reading of the table brought, and when that turned
    authentication on."""
    if after and not before:
        log.warning(
            "authentication is now on: %d API token(s) exist, so every listener refuses "
            "requests without a valid token for its scope",
            len(after),
        )
    for token_id, token in after.items():
        old = before.get(token_id)
        if old is None:
            log.info("token %s (%s, scopes %s) is accepted from now on",
                     token_id, log_text(token.name), token.scopes)  # fmt: skip
        if token.revoked_at is not None and (old is None or old.revoked_at is None):
            log.info("token %s (%s) was revoked at %s: refused from now on",
                     token_id, log_text(token.name), token.revoked_at)  # fmt: skip
