"""The console's sessions: sign-in with an API token, a signed cookie, CSRF tokens.

Signing in checks a ``read`` or ``admin`` token as every listener does; the session is
then a cookie (:data:`COOKIE`: HttpOnly, SameSite=Strict, Path=/console/, Secure under
TLS) holding ``base64url(payload) "." base64url(HMAC-SHA256(key, context || payload))``
where the payload names the token's id, the expiry (:data:`SESSION_S` after sign-in) and a
random session id. The token itself is never kept. Every request reads the token table
again, so a revoked token ends its sessions at once.

A form that changes something carries ``csrf`` = HMAC(key, "csrf" || session id); a POST
without the right one is refused (403). Without any token on the ledger the console is
open (on loopback only, as the other listeners) to an anonymous session whose CSRF token
is still keyed by the server's secret.

The key is 32 random bytes in the data directory (:data:`KEY_FILE`, mode 0600), so
sessions outlive a restart; removing the file ends them all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from otaudit.errors import ConfigError, Forbidden, Unauthenticated
from otaudit.secretfile import data_key
from otaudit.store.base import StoredToken

KEY_FILE: Final = "console-session.key"
"""The session key's file in the data directory: 64 hexadecimal digits."""

COOKIE: Final = "otaudit_session"
SESSION_S: Final = 8 * 3600
"""How long a session lasts after sign-in."""

KEY_BYTES: Final = 32
MAX_COOKIE_CHARS: Final = 512
_CONTEXT: Final = b"otaudit console session v1\n"
_CSRF: Final = b"otaudit console csrf v1\n"
ANONYMOUS_ID: Final = "anonymous"


@dataclass(frozen=True)
class Session:
    """Who is signed in: the token (None without tokens), its name and scopes."""

    token_id: str | None
    name: str
    scopes: tuple[str, ...]
    session_id: str
    expires_s: int

    @property
    def admin(self) -> bool:
        """Whether the token may triage alerts (the ``admin`` scope)."""
        return self.token_id is None or "admin" in self.scopes

    @property
    def owner(self) -> str:
        """Whose saved views and queries are shown: the token id, or ``anonymous``."""
        return self.token_id or ANONYMOUS_ID


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Makes and checks session cookies and CSRF tokens with one HMAC-SHA256 key."""

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) < KEY_BYTES:
            raise ConfigError(f"a session key needs {KEY_BYTES} bytes, got {len(key)}")
        self._key = secrets.token_bytes(KEY_BYTES) if key is None else key

    def _mac(self, context: bytes, payload: bytes) -> bytes:
        return hmac.new(self._key, context + payload, hashlib.sha256).digest()

    def issue(self, token_id: str, now_s: float | None = None) -> str:
        """A fresh cookie value for ``token_id``, valid :data:`SESSION_S` from now."""
        expires = int(time.time() if now_s is None else now_s) + SESSION_S
        payload = orjson.dumps({"t": token_id, "e": expires, "s": secrets.token_hex(16)})
        return f"{_b64(payload)}.{_b64(self._mac(_CONTEXT, payload))}"

    def open(self, cookie: str, now_s: float | None = None) -> tuple[str, int, str]:
        """The token id, expiry and session id of a cookie this server made, still valid.

        Steps: 1. bounded length; 2. the signature, before the payload is parsed; 3. the
        expiry. Unauthenticated saying which failed.
        """
        # 1. Ours are short.
        if len(cookie) > MAX_COOKIE_CHARS:
            raise Unauthenticated("the session cookie is not one this console made")
        # 2. Signed with this server's key over exactly these bytes.
        encoded, dot, signature = cookie.partition(".")
        try:
            payload, mac = _unb64(encoded), _unb64(signature)
        except (ValueError, binascii.Error):
            raise Unauthenticated("the session cookie is not one this console made") from None
        if not dot or not hmac.compare_digest(mac, self._mac(_CONTEXT, payload)):
            raise Unauthenticated("the session cookie is not signed by this console")
        # 3. Signed by us, so well-formed; the expiry still holds.
        try:
            fields = orjson.loads(payload)
            token_id, expires, session_id = str(fields["t"]), int(fields["e"]), str(fields["s"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise Unauthenticated("the session cookie's payload is not one we write") from None
        if expires <= (time.time() if now_s is None else now_s):
            raise Unauthenticated("the session has expired: sign in again")
        return token_id, expires, session_id

    def csrf(self, session_id: str) -> str:
        """The CSRF token of forms in session ``session_id``."""
        return self._mac(_CSRF, session_id.encode()).hex()

    def check_csrf(self, session_id: str, sent: str | None) -> None:
        """None if ``sent`` is the session's CSRF token; Forbidden otherwise."""
        if sent is None or not hmac.compare_digest(sent, self.csrf(session_id)):
            raise Forbidden("the form's CSRF token is missing or wrong: reload the page")


def session_for(
    signer: SessionSigner, cookie: str | None, tokens: list[StoredToken], required: bool
) -> Session:
    """The session of a request (Unauthenticated if it must sign in (again)).

    ``tokens`` is the token table as read for this request; ``required`` whether any
    token exists (authentication on). A revoked or removed token, or one that lost both
    the ``read`` and ``admin`` scopes, ends the session.
    """
    if not required:
        return Session(None, "anonymous", (), ANONYMOUS_ID, 0)
    if not cookie:
        raise Unauthenticated("sign in with a read or admin token")
    token_id, expires, session_id = signer.open(cookie)
    token = next((t for t in tokens if t.token_id == token_id), None)
    if token is None:
        raise Unauthenticated(f"token {token_id} no longer exists: sign in again")
    if token.revoked_at is not None:
        raise Unauthenticated(f"token {token_id} was revoked at {token.revoked_at}")
    scopes = tuple(token.scopes.split(","))
    if not {"read", "admin"} & set(scopes):
        raise Unauthenticated(f"token {token_id} lacks the read and admin scopes")
    return Session(token_id, token.name, scopes, session_id, expires)


def load_session_key(data: Path) -> bytes:
    """The session key in ``data`` / :data:`KEY_FILE`, created (0600) if there is none."""
    return data_key(data / KEY_FILE, "console session key", KEY_BYTES, "sessions then end")
