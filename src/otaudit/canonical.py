"""Canonical JSON bytes (RFC 8785, the JSON Canonicalization Scheme).

Record trees contain only strings, booleans, null, small integers, lists and
objects with string keys; every number that could lose precision (64-bit
integers, doubles) is encoded as a string before it gets here (see
``docs/record-format.md``). For such trees RFC 8785 reduces to: no
whitespace, object members sorted by the UTF-16 code units of their names,
strings escaped as ECMAScript's ``JSON.stringify`` does.

orjson with sorted keys produces exactly those bytes whenever the output is
pure ASCII (code point order and UTF-16 order agree there, and both escape
the same characters); anything else goes through the ``rfc8785`` reference
implementation. ``tests/test_canonical.py`` cross-checks the two.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical JSON encoding of ``value``.

    ``value`` must be a JSON tree of str, bool, None, int (|n| < 2**53),
    list and dict with str keys. Floats are refused: records carry doubles as
    strings so that NaN, infinities and every bit of precision survive.
    """
    out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if out.isascii():
        return out
    return bytes(rfc8785.dumps(value))
