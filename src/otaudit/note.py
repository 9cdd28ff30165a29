"""Signed notes: signing, parsing and verification (https://c2sp.org/signed-note).

A signed note is a UTF-8 text ending in a newline, a blank line, and one or more signature
lines ``— <key name> <base64(key ID || signature)>``, where ``—`` is U+2014 EM DASH. Keys are
identified by their name and a 4-byte key ID (see :mod:`otaudit.keys`).

The encoding rules shared by every note format (strict base64, key names, note text) live
here too, for :mod:`otaudit.keys`, :mod:`otaudit.checkpoint` and :mod:`otaudit.witness`. This
module is the bottom of the signing layers: it imports nothing of theirs, and signs and
verifies through the small :class:`NoteSigner` and :class:`NoteVerifier` interfaces that
:class:`~otaudit.keys.SigningKey` and :class:`~otaudit.keys.VerifierKey` implement.

Parsing is strict: malformed or badly signed notes raise
:class:`~otaudit.errors.VerificationError`, saying what was expected and what was found.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple, Protocol

from otaudit.errors import VerificationError

__all__ = [
    "MAX_SIGNATURES",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "b64decode_strict",
    "b64encode",
    "excerpt",
    "key_name_problem",
    "open_note",
    "parse_note",
    "sign_note",
    "signature_line",
    "text_problem",
]

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec requires accepting at least 16)."""

_SIG_PREFIX = "\u2014 "  # EM DASH, SPACE
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


# --------------------------------------------------------------------------------------------
# Encoding rules shared by every note format (otaudit.keys, otaudit.checkpoint, otaudit.witness)


def excerpt(value: str, limit: int = 48) -> str:
    """A short, quoted rendering of untrusted text for error messages."""
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    return repr(value)


def b64decode_strict(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4): padded, canonical, no whitespace; else None."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None  # non-zero padding bits or other non-canonical form
    return raw


def b64encode(raw: bytes) -> str:
    """Standard padded base64 (RFC 4648 §4) as ASCII text."""
    return base64.b64encode(raw).decode("ascii")


def key_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid signed-note key name, or None if it is."""
    if not isinstance(name, str):
        return f"key name must be a string, found {type(name).__name__}"
    if not name:
        return "key name must not be empty"
    for c in name:
        if c.isspace():
            return f"key name must not contain whitespace, found {c!r} in {excerpt(name)}"
        if c == "+":
            return f"key name must not contain '+', found {excerpt(name)}"
        if ord(c) < 0x20 or c == "\x7f":
            return f"key name must not contain control characters, found {c!r} in {excerpt(name)}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"key name must be valid UTF-8, found {excerpt(name)}"
    return None


def text_problem(text: str, what: str) -> str | None:
    """Why ``text`` cannot be (part of) a signed note, or None (c2sp.org/signed-note)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} must be valid UTF-8"
    bad = _CONTROL_RE.search(text)
    if bad:
        return (
            f"{what} must not contain control characters other than newline, "
            f"found U+{ord(bad.group()):04X} at offset {bad.start()}"
        )
    return None


# --------------------------------------------------------------------------------------------
# Signed notes


class NoteSigner(Protocol):
    """What signs a note: a key name, its 4-byte key ID and a signature function.

    :class:`otaudit.keys.SigningKey` is one (c2sp.org/signed-note).
    """

    @property
    def name(self) -> str:
        """The key name."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        ...

    def sign(self, text: bytes) -> bytes:
        """The signature of ``text``."""
        ...


class NoteVerifier(Protocol):
    """What checks a note's signature: a key name, its 4-byte key ID and a check.

    :class:`otaudit.keys.VerifierKey` is one (c2sp.org/signed-note).
    """

    @property
    def name(self) -> str:
        """The key name."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        ...

    def verify(self, text: bytes, sig: bytes) -> None:
        """Return None if ``sig`` is a valid signature of ``text``; else raise
        :class:`~otaudit.errors.VerificationError`."""
        ...


class NoteSignature(NamedTuple):
    """One signature line of a signed note, as found by :func:`parse_note`."""

    line: int
    """The 1-based line number of the signature line in the note."""
    name: str
    """The key name."""
    key_id: bytes
    """The 4-byte key ID."""
    signature: bytes
    """The signature bytes after the key ID (their format depends on the key type)."""


def signature_line(name: str, key_id: bytes, signature: bytes) -> str:
    """A note signature line, ``— <name> <base64(key ID || signature)>`` and a newline.

    ``name`` must be a valid key name and ``key_id`` 4 bytes; otherwise :class:`ValueError`.
    """
    problem = key_name_problem(name)
    if problem:
        raise ValueError(problem)
    if len(key_id) != 4:
        raise ValueError(f"key id must be 4 bytes, found {len(key_id)} bytes")
    return f"{_SIG_PREFIX}{name} {b64encode(key_id + signature)}\n"


def sign_note(text: str | bytes, key: NoteSigner) -> str:
    """Sign a note text with ``key``; return the signed note (c2sp.org/signed-note).

    The result is ``text``, a blank line, and ``— <name> <base64(key ID || signature)>`` and a
    newline. ``text`` must be valid UTF-8, end with a newline and contain no control characters
    other than newline; otherwise :class:`ValueError` is raised.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("note text must be valid UTF-8") from None
    problem = text_problem(text, "note text")
    if problem:
        raise ValueError(problem)
    if not text.endswith("\n"):
        raise ValueError(f"note text must end with a newline, found {excerpt(text[-20:])} at end")
    sig = key.sign(text.encode("utf-8"))
    return f"{text}\n{signature_line(key.name, key.key_id, sig)}"


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and its signature lines, verifying nothing.

    The text is returned with its final newline (it is what was signed). Each signature line
    is checked for form only (c2sp.org/signed-note): an EM DASH and a space, a valid key name,
    a space, and canonical base64 of a 4-byte key ID and at least one signature byte. Raises
    :class:`~otaudit.errors.VerificationError` for any malformation; see :func:`open_note`.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationError(
                f"signed note must be valid UTF-8, found invalid bytes at offset {exc.start}"
            ) from None
    elif not isinstance(note, str):
        raise VerificationError(f"signed note must be str or bytes, found {type(note).__name__}")
    problem = text_problem(note, "signed note")
    if problem:
        raise VerificationError(problem)
    if not note.endswith("\n"):
        raise VerificationError(
            f"signed note must end with a newline, found {excerpt(note[-20:])} at the end"
        )
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError(
            "signed note must have a blank line between the text and the signatures, found none"
        )
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise VerificationError(
            "signed note must have at least one signature line after the last blank line, "
            "found none"
        )
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(
            f"signed note must have at most {MAX_SIGNATURES} signature lines, found {len(lines)}"
        )
    first_line = text.count("\n") + 2  # 1-based line number of the first signature line
    signatures: list[NoteSignature] = []
    for offset, line in enumerate(lines):
        lineno = first_line + offset
        if not line.startswith(_SIG_PREFIX):
            raise VerificationError(
                f"signed note line {lineno} must be a signature line starting with "
                f"U+2014 EM DASH and a space, found {excerpt(line)}"
            )
        fields = line[len(_SIG_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise VerificationError(
                f"signed note line {lineno} must be '— <key name> <base64 signature>', "
                f"found {len(fields)} space-separated field(s) in {excerpt(line)}"
            )
        name, sig_b64 = fields
        problem = key_name_problem(name)
        if problem:
            raise VerificationError(f"signed note line {lineno}: {problem}")
        raw = b64decode_strict(sig_b64)
        if raw is None:
            raise VerificationError(
                f"signed note line {lineno}: signature must be canonical standard base64, "
                f"found {excerpt(sig_b64)}"
            )
        if len(raw) < 5:
            raise VerificationError(
                f"signed note line {lineno}: signature must be a 4-byte key id and at least one "
                f"signature byte, found {len(raw)} bytes"
            )
        signatures.append(NoteSignature(lineno, name, raw[:4], raw[4:]))
    return text, signatures


def open_note(note: str | bytes, key: NoteVerifier) -> str:
    """Verify a signed note with ``key`` and return its text (c2sp.org/signed-note).

    Signature lines from other keys (another name, or another key ID) are ignored, as the spec
    requires; at least one line must be ``key``'s, and every line claiming ``key``'s name and ID
    must verify. Raises :class:`~otaudit.errors.VerificationError` for any malformation
    (invalid UTF-8, control characters, no final newline, no blank line before the signatures,
    a malformed signature line, more than :data:`MAX_SIGNATURES` signatures), for a signature
    by ``key`` that fails, or when ``key`` did not sign.
    """
    text, signatures = parse_note(note)
    data = text.encode("utf-8")
    verified = 0
    for lineno, name, key_id, sig in signatures:
        if name != key.name or key_id != key.key_id:
            continue
        try:
            key.verify(data, sig)
        except VerificationError as exc:
            raise VerificationError(f"signed note line {lineno}: {exc}") from None
        verified += 1
    if not verified:
        found = ", ".join(f"{name}+{key_id.hex()}" for _, name, key_id, _ in signatures)
        raise VerificationError(
            f"signed note has no signature by {key.name}+{key.key_id.hex()}; found {found}"
        )
    return text
