"""Checking the read API's parameters: each bad one is a 400 that names it.

A numeric parameter is a JSON integer or a string of ASCII digits (``0-9``
only, at most :data:`MAX_DIGITS` of them), then checked against its range.
Python's ``int()`` alone is not enough: it accepts other scripts' digits
(``int('١٢')`` is 12), ``str.isdigit()`` is true for ``²`` which ``int()``
refuses, and ``int()`` of more than 4,300 digits raises. A value the client
sent is quoted in a message only cut (:func:`quote`).
"""

from __future__ import annotations

from typing import Any, Final

from otaudit.errors import BadRequest

MAX_DIGITS: Final = 20
"""Digits a numeric parameter may have (2^64 has 20): more is refused before conversion."""

MAX_TIME_CHARS: Final = 64
"""Characters of ``since`` / ``until``: ample for RFC 3339 with nanoseconds and an offset."""

QUOTE_CHARS: Final = 80
"""Characters of a client's value quoted in an error message."""

_ASCII_DIGITS: Final = frozenset("0123456789")

__all__ = ["BadRequest", "integer", "quote", "time_text"]


def quote(value: object) -> str:
    """``value`` for an error message: its repr, cut to :data:`QUOTE_CHARS` with its length."""
    if isinstance(value, int) and value.bit_length() > 64:  # repr of >4300 digits raises
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    if len(text) <= QUOTE_CHARS:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters"
    return f"{text[:QUOTE_CHARS]}... ({size})"


def integer(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an integer in ``[low, high]``: a JSON integer, or ASCII digits.

    BadRequest (400 ``bad_parameter``, naming ``name``) for anything else: a
    boolean, a float, a sign, a space, a non-ASCII digit, more than
    :data:`MAX_DIGITS` digits, or a number out of range.
    """
    expected = f"{name} must be an integer from {low} to {high}"
    if isinstance(value, str):
        if not value or len(value) > MAX_DIGITS or not set(value) <= _ASCII_DIGITS:
            raise BadRequest(
                400, "bad_parameter", f"{expected} in ASCII digits, got {quote(value)}"
            )
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(400, "bad_parameter", f"{expected}, got {quote(value)}")
    if not low <= value <= high:
        raise BadRequest(400, "bad_parameter", f"{expected}, got {quote(value)}")
    return value


def time_text(value: str, name: str) -> str:
    """``value`` of ``since`` / ``until`` if not longer than :data:`MAX_TIME_CHARS` (BadRequest)."""
    if len(value) > MAX_TIME_CHARS:
        raise BadRequest(
            400,
            "bad_parameter",
            f"{name} must be at most {MAX_TIME_CHARS} characters, got {quote(value)}",
        )
    return value
