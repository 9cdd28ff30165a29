"""The read API's page cursors: opaque to clients, signed by the server.

A cursor says where the next page starts (a sequence number for search, a row
offset for SQL) and binds it to the question asked (a digest of the filters or
the statement). It is ``base64url(payload) "." base64url(HMAC-SHA256(key,
context || payload))``, so a client can read a cursor but not make one: a
forged or edited cursor is refused with 400 before anything in it is used.

The key is 32 random bytes kept in the data directory (:data:`KEY_FILE`, mode
0600, created on first start), so cursors stay valid across a restart; nodes
that should accept each other's cursors share the file. Without a data
directory (:class:`CursorSigner` made with no key) the key lives and dies with
the process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Final

import orjson

from otaudit.errors import ConfigError
from otaudit.readapi.params import BadRequest
from otaudit.secretfile import data_key

KEY_FILE: Final = "read-api-cursor.key"
"""The cursor key's file in the data directory: 64 hexadecimal digits."""

KEY_BYTES: Final = 32
MAX_CURSOR_CHARS: Final = 512
"""The longest cursor accepted; the API's own are under 200 characters."""

MAX_POSITION: Final = (1 << 63) - 1
"""The highest position a cursor may hold (a sequence number is a signed 64-bit integer)."""

_CONTEXT: Final = b"otaudit read API cursor v1\n"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _refuse(message: str) -> BadRequest:
    return BadRequest(400, "bad_cursor", message)


class CursorSigner:
    """Makes and checks cursors with one HMAC-SHA256 key (random per process if none is given)."""

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) < KEY_BYTES:
            raise ConfigError(f"a cursor key needs {KEY_BYTES} bytes, got {len(key)}")
        self._key = secrets.token_bytes(KEY_BYTES) if key is None else key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _CONTEXT + payload, hashlib.sha256).digest()

    def encode(self, kind: str, position: int, digest: str) -> str:
        """A cursor for ``position`` of query ``digest`` of ``kind`` (``records``, ``sql``)."""
        payload = orjson.dumps({"k": kind, "p": position, "d": digest})
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, text: str, kind: str, digest: str, high: int = MAX_POSITION) -> int:
        """The position in ``text``, a cursor this server made for this query.

        Steps: 1. bounded length; 2. the signature, checked before the payload
        is parsed; 3. the payload's kind and position in ``[0, high]``; 4. the
        query it belongs to. BadRequest (400 ``bad_cursor``) saying which failed.
        """
        # 1. A cursor is short; a long one is not ours, and is not worth decoding.
        if len(text) > MAX_CURSOR_CHARS:
            raise _refuse(f"cursor is {len(text)} characters; this API's are under 512")
        # 2. The signature: made with this server's key over exactly these bytes.
        encoded, dot, signature = text.partition(".")
        try:
            payload, mac = _unb64(encoded), _unb64(signature)
        except (ValueError, binascii.Error):
            raise _refuse("cursor is not one this API returned (not base64url)") from None
        if not dot or not hmac.compare_digest(mac, self._mac(payload)):
            raise _refuse(
                "cursor is not one this API returned: it is not signed by this server (forged,"
                " edited, or made with another key); ask again from the first page"
            )
        # 3. Signed by us, so well-formed unless the format changed; checked all the same.
        try:
            fields = orjson.loads(payload)
            position = fields["p"]
            ours = fields["k"] == kind and fields["d"] == digest
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise _refuse("cursor payload is not one this API writes") from None
        if not isinstance(position, int) or isinstance(position, bool):
            raise _refuse("cursor position is not an integer")
        if not 0 <= position <= high:
            raise _refuse(f"cursor position {position} is outside 0..{high}")
        # 4. The question: a cursor pages through the query that produced it only.
        if not ours:
            raise _refuse("cursor belongs to a different query")
        return position


def load_cursor_key(data: Path) -> bytes:
    """The cursor key in ``data`` / :data:`KEY_FILE`, created (0600) if there is none.

    ConfigError if the file is not a private regular file of 64 hexadecimal digits.
    """
    return data_key(
        data / KEY_FILE, "read API cursor key", KEY_BYTES, "open cursors then stop working"
    )
