"""Signed notes and transparency-log checkpoints, with Ed25519 keys.

This module implements two C2SP specifications:

* **signed-note** (https://c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank
  line, and one or more signature lines ``— <key name> <base64(key ID || signature)>``, where
  ``—`` is U+2014 EM DASH. Keys are identified by their name and a 4-byte key ID,
  ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` for Ed25519 (signature type ``0x01``).
  Verifier keys are written ``<name>+<hex key ID>+<base64(0x01 || public key)>`` and private
  keys, as in Go's ``golang.org/x/mod/sumdb/note``,
  ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>``.
* **tlog-checkpoint** (https://c2sp.org/tlog-checkpoint): a signed note whose text is the
  log's origin, its tree size in decimal, the base64 root hash of the RFC 6962/9162 Merkle
  tree, and optional extension lines.

Parsing is strict. Malformed key material raises :class:`~otaudit.errors.ConfigError`;
malformed or badly signed notes and checkpoints raise
:class:`~otaudit.errors.VerificationError`; both say what was expected and what was found.
Messages never include private key material.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from otaudit.errors import ConfigError, VerificationError

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_SIGNATURES",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "SigningKey",
    "VerifierKey",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
]

ED25519_SIGNATURE_TYPE = 0x01
"""The signed-note signature type identifier byte of Ed25519 (c2sp.org/signed-note)."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec requires accepting at least 16)."""

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size accepted in a checkpoint (an unsigned 64-bit integer, as in Go)."""

_SIG_PREFIX = "\u2014 "  # EM DASH, SPACE
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_KEY_ID_RE = re.compile(r"[0-9a-f]{8}")
_TREE_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HASH_SIZE = 32
_MAX_KEY_FILE_BYTES = 4096


# --------------------------------------------------------------------------------------------
# Helpers


def _show(value: str, limit: int = 48) -> str:
    """A short, quoted rendering of untrusted text for error messages."""
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    return repr(value)


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4): padded, canonical, no whitespace; else None."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None  # non-zero padding bits or other non-canonical form
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _key_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid signed-note key name, or None if it is."""
    if not isinstance(name, str):
        return f"key name must be a string, found {type(name).__name__}"
    if not name:
        return "key name must not be empty"
    for c in name:
        if c.isspace():
            return f"key name must not contain whitespace, found {c!r} in {_show(name)}"
        if c == "+":
            return f"key name must not contain '+', found {_show(name)}"
        if ord(c) < 0x20 or c == "\x7f":
            return f"key name must not contain control characters, found {c!r} in {_show(name)}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"key name must be valid UTF-8, found {_show(name)}"
    return None


def _ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` (c2sp.org/signed-note, Ed25519)."""
    data = name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + public_key
    return hashlib.sha256(data).digest()[:4]


def _text_problem(text: str, what: str) -> str | None:
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
# Keys


class VerifierKey:
    """An Ed25519 signed-note verifier (public) key (c2sp.org/signed-note).

    Its text form is ``<name>+<8 lowercase hex key ID>+<base64(0x01 || 32-byte public key)>``.
    Build one with :meth:`parse` or :meth:`SigningKey.verifier`.
    """

    __slots__ = ("_key_id", "_name", "_public", "_public_bytes")

    def __init__(self, name: str, public_key_bytes: bytes) -> None:
        """Make a verifier for ``name`` and a raw 32-byte Ed25519 public key.

        Raises :class:`~otaudit.errors.ConfigError` for an invalid name or key.
        """
        problem = _key_name_problem(name)
        if problem:
            raise ConfigError(problem)
        if not isinstance(public_key_bytes, bytes) or len(public_key_bytes) != 32:
            found = (
                f"{len(public_key_bytes)} bytes"
                if isinstance(public_key_bytes, bytes)
                else type(public_key_bytes).__name__
            )
            raise ConfigError(f"Ed25519 public key must be 32 bytes, found {found}")
        try:
            self._public = Ed25519PublicKey.from_public_bytes(public_key_bytes)
        except ValueError as exc:  # pragma: no cover - every 32-byte string is accepted today
            raise ConfigError(f"invalid Ed25519 public key: {exc}") from exc
        self._name = name
        self._public_bytes = public_key_bytes
        self._key_id = _ed25519_key_id(name, public_key_bytes)

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse a verifier key ``<name>+<hex key ID>+<base64(0x01 || public key)>``.

        Strict (c2sp.org/signed-note): the key ID must be 8 lowercase hex digits and equal to
        the ID computed from the name and key, the key data canonical base64 of exactly
        33 bytes starting with the Ed25519 type byte 0x01. Raises
        :class:`~otaudit.errors.ConfigError` saying what was expected and what was found.
        """
        if not isinstance(text, str):
            raise ConfigError(f"verifier key must be a string, found {type(text).__name__}")
        parts = text.split("+", 2)  # the base64 key data may itself contain '+'
        if len(parts) != 3:
            raise ConfigError(
                f"verifier key must be '<name>+<key id>+<base64 key>', found {_show(text)}"
            )
        name, key_id_hex, key_b64 = parts
        problem = _key_name_problem(name)
        if problem:
            raise ConfigError(f"verifier key: {problem}")
        if not _KEY_ID_RE.fullmatch(key_id_hex):
            raise ConfigError(
                f"verifier key: key id must be 8 lowercase hex digits, found {_show(key_id_hex)}"
            )
        raw = _b64decode(key_b64)
        if raw is None:
            raise ConfigError(
                f"verifier key: key data must be canonical standard base64, found {_show(key_b64)}"
            )
        if len(raw) != 33:
            raise ConfigError(
                f"verifier key: key data must be 33 bytes (type byte 0x01 and a 32-byte Ed25519 "
                f"public key), found {len(raw)} bytes"
            )
        if raw[0] != ED25519_SIGNATURE_TYPE:
            raise ConfigError(
                f"verifier key: unsupported signature type 0x{raw[0]:02x}, expected 0x01 (Ed25519)"
            )
        key = cls(name, raw[1:])
        if key.key_id.hex() != key_id_hex:
            raise ConfigError(
                f"verifier key: key id mismatch: the text says {key_id_hex}, "
                f"the name and key give {key.key_id.hex()}"
            )
        return key

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID, ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``."""
        return self._key_id

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_bytes

    def verify(self, text: bytes, sig: bytes) -> None:
        """Check a raw 64-byte Ed25519 signature over ``text`` (RFC 8032).

        Returns None; raises :class:`~otaudit.errors.VerificationError` if the signature is not
        64 bytes or does not verify.
        """
        if not isinstance(sig, bytes) or len(sig) != 64:
            found = f"{len(sig)} bytes" if isinstance(sig, bytes) else type(sig).__name__
            raise VerificationError(f"Ed25519 signature must be 64 bytes, found {found}")
        try:
            self._public.verify(sig, text)
        except InvalidSignature:
            raise VerificationError(
                f"signature does not verify with key {self._name}+{self._key_id.hex()}"
            ) from None

    def __str__(self) -> str:
        raw = bytes([ED25519_SIGNATURE_TYPE]) + self._public_bytes
        return f"{self._name}+{self._key_id.hex()}+{_b64encode(raw)}"

    def __repr__(self) -> str:
        return f"VerifierKey.parse({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifierKey):
            return NotImplemented
        return (self._name, self._public_bytes) == (other._name, other._public_bytes)

    def __hash__(self) -> int:
        return hash((self._name, self._public_bytes))


class SigningKey:
    """An Ed25519 signed-note signing (private) key (c2sp.org/signed-note).

    The private text form is Go's ``golang.org/x/mod/sumdb/note`` encoding,
    ``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>``. Build one with
    :meth:`generate`, :meth:`from_seed`, :meth:`from_private_text` or :meth:`load`.
    """

    __slots__ = ("_private", "_seed", "_verifier")

    def __init__(self, name: str, seed: bytes) -> None:
        """Make a key from a name and a 32-byte Ed25519 seed (RFC 8032 private key).

        Raises :class:`~otaudit.errors.ConfigError` for an invalid name or seed.
        """
        problem = _key_name_problem(name)
        if problem:
            raise ConfigError(problem)
        if not isinstance(seed, bytes) or len(seed) != 32:
            found = f"{len(seed)} bytes" if isinstance(seed, bytes) else type(seed).__name__
            raise ConfigError(f"Ed25519 seed must be 32 bytes, found {found}")
        self._seed = seed
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._verifier = VerifierKey(name, self._private.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """Generate a new random key called ``name`` (non-empty, no whitespace, no '+')."""
        return cls(name, secrets.token_bytes(32))

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> SigningKey:
        """Make a key from a name and a 32-byte Ed25519 seed; same as the constructor."""
        return cls(name, seed)

    @property
    def name(self) -> str:
        """The key name."""
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID, ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``."""
        return self._verifier.key_id

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._verifier.public_key_bytes

    def verifier(self) -> VerifierKey:
        """The matching :class:`VerifierKey`."""
        return self._verifier

    def verifier_key(self) -> str:
        """The verifier key text, ``<name>+<8 hex key ID>+<base64(0x01 || public key)>``."""
        return str(self._verifier)

    def sign(self, text: bytes) -> bytes:
        """Return the raw 64-byte Ed25519 signature of ``text`` (RFC 8032)."""
        return self._private.sign(text)

    def to_private_text(self) -> str:
        """The private key text ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

        This is secret: whoever has it can sign as this key.
        """
        raw = bytes([ED25519_SIGNATURE_TYPE]) + self._seed
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{_b64encode(raw)}"

    @classmethod
    def from_private_text(cls, text: str) -> SigningKey:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`` strictly.

        No surrounding whitespace is allowed; the key ID must be 8 lowercase hex digits equal
        to the ID computed from the name and the derived public key; the key data must be
        canonical base64 of exactly 33 bytes starting with 0x01 (Ed25519). Raises
        :class:`~otaudit.errors.ConfigError`; messages never include the secret key data.
        """
        if not isinstance(text, str):
            raise ConfigError(f"private key must be a string, found {type(text).__name__}")
        if not text.startswith(_PRIVATE_PREFIX):
            raise ConfigError(f"private key must start with {_PRIVATE_PREFIX!r}")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise ConfigError(
                "private key must be 'PRIVATE+KEY+<name>+<key id>+<base64 key>', "
                f"found {len(parts)} '+'-separated field(s) after the prefix"
            )
        name, key_id_hex, key_b64 = parts
        problem = _key_name_problem(name)
        if problem:
            raise ConfigError(f"private key: {problem}")
        if not _KEY_ID_RE.fullmatch(key_id_hex):
            raise ConfigError(
                f"private key: key id must be 8 lowercase hex digits, found {_show(key_id_hex)}"
            )
        raw = _b64decode(key_b64)
        if raw is None:
            raise ConfigError(
                f"private key: key data must be canonical standard base64 "
                f"({len(key_b64)} characters found)"
            )
        if len(raw) != 33:
            raise ConfigError(
                f"private key: key data must be 33 bytes (type byte 0x01 and a 32-byte Ed25519 "
                f"seed), found {len(raw)} bytes"
            )
        if raw[0] != ED25519_SIGNATURE_TYPE:
            raise ConfigError(
                f"private key: unsupported signature type 0x{raw[0]:02x}, expected 0x01 (Ed25519)"
            )
        key = cls(name, raw[1:])
        if key.key_id.hex() != key_id_hex:
            raise ConfigError(
                f"private key: key id mismatch: the text says {key_id_hex}, "
                f"the name and key give {key.key_id.hex()}"
            )
        return key

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the private key text (and a newline) to a new file at ``path``, mode 0600.

        Atomic and never overwrites: the key is written to a temporary file created with mode
        0600 in the same directory and fsynced, then hard-linked to ``path`` (which fails if
        ``path`` exists; where hard links are unsupported it is renamed after a check), and
        the directory is fsynced. Raises :class:`~otaudit.errors.ConfigError` if ``path``
        already exists or cannot be written.
        """
        target = Path(path)
        directory = target.parent
        if os.path.lexists(target):
            raise ConfigError(f"refusing to overwrite existing key file {target}")
        data = (self.to_private_text() + "\n").encode("utf-8")
        tmp = directory / f".{target.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create key file {target}: {exc.strerror or exc}") from exc
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise ConfigError(f"refusing to overwrite existing key file {target}") from None
            except OSError:
                # No hard links on this file system: fall back to a checked rename.
                if os.path.lexists(target):
                    raise ConfigError(f"refusing to overwrite existing key file {target}") from None
                os.rename(tmp, target)
        except OSError as exc:
            raise ConfigError(f"cannot write key file {target}: {exc.strerror or exc}") from exc
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            except OSError:  # pragma: no cover - best effort cleanup
                pass
        _fsync_directory(directory, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a private key file written by :meth:`save` (one optional trailing newline).

        Raises :class:`~otaudit.errors.ConfigError`, naming the path, if the file is missing,
        unreadable, not a regular file, too large, not UTF-8, malformed (see
        :meth:`from_private_text`), or if its permissions allow any group or other access.
        """
        source = Path(path)
        try:
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ConfigError(f"key file {source} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot open key file {source}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"key file {source} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"key file {source} has mode {mode:04o}, which allows group or other "
                    f"access; it must be 0600 or stricter (chmod 600 {source})"
                )
            chunks: list[bytes] = []
            total = 0
            while total <= _MAX_KEY_FILE_BYTES:
                chunk = os.read(fd, _MAX_KEY_FILE_BYTES + 1 - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except OSError as exc:
            raise ConfigError(f"cannot read key file {source}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        raw = b"".join(chunks)
        if len(raw) > _MAX_KEY_FILE_BYTES:
            raise ConfigError(
                f"key file {source} is larger than {_MAX_KEY_FILE_BYTES} bytes; "
                "it should hold one private key line"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"key file {source} is not UTF-8 text") from None
        if text.endswith("\n"):
            text = text[:-1]
        try:
            return cls.from_private_text(text)
        except ConfigError as exc:
            raise ConfigError(f"key file {source}: {exc}") from None

    def __repr__(self) -> str:
        return f"SigningKey(name={self.name!r}, key_id={self.key_id.hex()!r})"


def _fsync_directory(directory: Path, target: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(
            f"cannot open directory {directory} to sync key file {target}: {exc.strerror or exc}"
        ) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # not syncable here; nothing to do
            raise ConfigError(
                f"cannot sync directory {directory} after writing key file {target}: "
                f"{exc.strerror or exc}"
            ) from exc
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Signed notes


def sign_note(text: str | bytes, key: SigningKey) -> str:
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
    problem = _text_problem(text, "note text")
    if problem:
        raise ValueError(problem)
    if not text.endswith("\n"):
        raise ValueError(f"note text must end with a newline, found {_show(text[-20:])} at end")
    sig = key.sign(text.encode("utf-8"))
    return f"{text}\n{_SIG_PREFIX}{key.name} {_b64encode(key.key_id + sig)}\n"


def _parse_note(note: str | bytes) -> tuple[str, list[tuple[int, str, bytes, bytes]]]:
    """Split a signed note into its text and (line number, name, key ID, signature) tuples."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationError(
                f"signed note must be valid UTF-8, found invalid bytes at offset {exc.start}"
            ) from None
    elif not isinstance(note, str):
        raise VerificationError(f"signed note must be str or bytes, found {type(note).__name__}")
    problem = _text_problem(note, "signed note")
    if problem:
        raise VerificationError(problem)
    if not note.endswith("\n"):
        raise VerificationError(
            f"signed note must end with a newline, found {_show(note[-20:])} at the end"
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
    signatures: list[tuple[int, str, bytes, bytes]] = []
    for offset, line in enumerate(lines):
        lineno = first_line + offset
        if not line.startswith(_SIG_PREFIX):
            raise VerificationError(
                f"signed note line {lineno} must be a signature line starting with "
                f"U+2014 EM DASH and a space, found {_show(line)}"
            )
        fields = line[len(_SIG_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise VerificationError(
                f"signed note line {lineno} must be '— <key name> <base64 signature>', "
                f"found {len(fields)} space-separated field(s) in {_show(line)}"
            )
        name, sig_b64 = fields
        problem = _key_name_problem(name)
        if problem:
            raise VerificationError(f"signed note line {lineno}: {problem}")
        raw = _b64decode(sig_b64)
        if raw is None:
            raise VerificationError(
                f"signed note line {lineno}: signature must be canonical standard base64, "
                f"found {_show(sig_b64)}"
            )
        if len(raw) < 5:
            raise VerificationError(
                f"signed note line {lineno}: signature must be a 4-byte key id and at least one "
                f"signature byte, found {len(raw)} bytes"
            )
        signatures.append((lineno, name, raw[:4], raw[4:]))
    return text, signatures


def open_note(note: str | bytes, key: VerifierKey) -> str:
    """Verify a signed note with ``key`` and return its text (c2sp.org/signed-note).

    Signature lines from other keys (another name, or another key ID) are ignored, as the spec
    requires; at least one line must be ``key``'s, and every line claiming ``key``'s name and ID
    must verify. Raises :class:`~otaudit.errors.VerificationError` for any malformation
    (invalid UTF-8, control characters, no final newline, no blank line before the signatures,
    a malformed signature line, more than :data:`MAX_SIGNATURES` signatures), for a signature
    by ``key`` that fails, or when ``key`` did not sign.
    """
    text, signatures = _parse_note(note)
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


# --------------------------------------------------------------------------------------------
# Checkpoints


def _origin_problem(origin: object) -> str | None:
    if not isinstance(origin, str):
        return f"checkpoint origin must be a string, found {type(origin).__name__}"
    if not origin:
        return "checkpoint origin must not be empty"
    if "\n" in origin:
        return f"checkpoint origin must be a single line, found {_show(origin)}"
    return _text_problem(origin, "checkpoint origin")


def _extension_problem(index: int, line: object) -> str | None:
    if not isinstance(line, str):
        return f"checkpoint extension line {index} must be a string, found {type(line).__name__}"
    if not line:
        return f"checkpoint extension line {index} must not be empty"
    if "\n" in line:
        return f"checkpoint extension line {index} must be a single line, found {_show(line)}"
    return _text_problem(line, f"checkpoint extension line {index}")


@dataclass(frozen=True)
class Checkpoint:
    """A transparency-log checkpoint: the note text of c2sp.org/tlog-checkpoint.

    ``origin`` identifies the log, ``tree_size`` is the number of leaves, ``root_hash`` the
    32-byte RFC 6962/9162 Merkle tree root, and ``extensions`` optional extra non-empty lines
    (opaque; the spec does not recommend them). Invalid field values raise :class:`ValueError`.
    """

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _origin_problem(self.origin)
        if problem:
            raise ValueError(problem)
        size = self.tree_size
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"checkpoint tree size must be an int, found {type(size).__name__}")
        if not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"checkpoint tree size must be in [0, 2**64 - 1], found {size}")
        root = self.root_hash
        if not isinstance(root, bytes) or len(root) != _HASH_SIZE:
            found = f"{len(root)} bytes" if isinstance(root, bytes) else type(root).__name__
            raise ValueError(f"checkpoint root hash must be 32 bytes, found {found}")
        if isinstance(self.extensions, list):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        if not isinstance(self.extensions, tuple):
            raise ValueError(
                f"checkpoint extensions must be a tuple of lines, "
                f"found {type(self.extensions).__name__}"
            )
        for i, line in enumerate(self.extensions):
            problem = _extension_problem(i, line)
            if problem:
                raise ValueError(problem)

    def body(self) -> bytes:
        """The note text (c2sp.org/tlog-checkpoint), UTF-8 encoded.

        ``origin``, the decimal tree size, the base64 root hash and each extension line, every
        one followed by a newline.
        """
        lines = [self.origin, str(self.tree_size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse_body(cls, body: bytes | str) -> Checkpoint:
        """Parse a checkpoint note text strictly (c2sp.org/tlog-checkpoint).

        Expects valid UTF-8 without control characters other than newline, ending in a
        newline, with at least three non-empty lines: the origin, the tree size in ASCII
        decimal without leading zeros (at most 2**64 - 1), the canonical standard base64 of a
        32-byte root hash, then any non-empty extension lines. Raises
        :class:`~otaudit.errors.VerificationError` saying what was expected and what was found.
        """
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise VerificationError(
                    f"checkpoint body must be valid UTF-8, found invalid bytes at offset "
                    f"{exc.start}"
                ) from None
        elif not isinstance(body, str):
            raise VerificationError(
                f"checkpoint body must be str or bytes, found {type(body).__name__}"
            )
        problem = _text_problem(body, "checkpoint body")
        if problem:
            raise VerificationError(problem)
        if not body.endswith("\n"):
            raise VerificationError(
                f"checkpoint body must end with a newline, found {_show(body[-20:])} at the end"
            )
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError(
                "checkpoint body must have at least 3 lines (origin, tree size, root hash), "
                f"found {len(lines)}"
            )
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise VerificationError("checkpoint origin (line 1) must not be empty")
        if not _TREE_SIZE_RE.fullmatch(size_text):
            raise VerificationError(
                "checkpoint tree size (line 2) must be ASCII decimal without leading zeros, "
                f"found {_show(size_text)}"
            )
        tree_size = int(size_text)
        if tree_size > MAX_TREE_SIZE:
            raise VerificationError(
                f"checkpoint tree size (line 2) must be at most 2**64 - 1, found {size_text}"
            )
        root = _b64decode(root_text)
        if root is None:
            raise VerificationError(
                "checkpoint root hash (line 3) must be canonical standard base64, "
                f"found {_show(root_text)}"
            )
        if len(root) != _HASH_SIZE:
            raise VerificationError(
                f"checkpoint root hash (line 3) must be 32 bytes, found {len(root)} bytes"
            )
        for i, line in enumerate(extensions):
            if not line:
                raise VerificationError(
                    f"checkpoint extension line {i + 1} (line {i + 4}) must not be empty"
                )
        return cls(origin, tree_size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, key: SigningKey) -> str:
    """Sign a checkpoint; return the signed note text (c2sp.org/tlog-checkpoint).

    That is ``cp.body()``, a blank line and ``— <key name> <base64(key ID || signature)>``
    with a final newline. The spec recommends that the key name match the origin; it is not
    enforced.
    """
    return sign_note(cp.body(), key)


def open_checkpoint(note: str | bytes, key: VerifierKey, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint with ``key`` and parse it (c2sp.org/tlog-checkpoint).

    The signature is checked first (see :func:`open_note`: signatures from other keys are
    ignored, at least one valid signature by ``key`` is required, and any failing signature by
    ``key`` is fatal), then the body is parsed with :meth:`Checkpoint.parse_body`, then, if
    ``origin`` is given, the checkpoint's origin must equal it. Raises
    :class:`~otaudit.errors.VerificationError` on any failure or malformation.
    """
    text = open_note(note, key)
    cp = Checkpoint.parse_body(text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(
            f"checkpoint origin must be {_show(origin)}, found {_show(cp.origin)}"
        )
    return cp
