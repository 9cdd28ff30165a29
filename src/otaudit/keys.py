"""Ed25519 signed-note keys: verifier and signing keys, key IDs and key files.

Keys follow c2sp.org/signed-note (https://c2sp.org/signed-note). A key is identified by its
name and a 4-byte key ID, ``SHA-256(name || 0x0A || type || public key)[:4]``, where the type
byte is ``0x01`` for Ed25519 note signatures (and ``0x04`` for Ed25519 cosignature/v1, see
:mod:`otaudit.witness`). Verifier keys are written
``<name>+<hex key ID>+<base64(0x01 || public key)>`` and private keys, as in Go's
``golang.org/x/mod/sumdb/note``, ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte
seed)>``. Key files hold the private key text, mode 0600.

Parsing is strict. Malformed key material raises :class:`~otaudit.errors.ConfigError`, saying
what was expected and what was found; messages never include private key material.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from otaudit.errors import ConfigError, VerificationError
from otaudit.note import b64decode_strict, b64encode, excerpt, key_name_problem
from otaudit.smallfile import (
    open_temporary,
    publish,
    read_small_file,
    remove_temporary,
    sync_directory,
    write_synced,
)

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "SigningKey",
    "VerifierKey",
    "note_key_id",
    "parse_verifier_text",
]

ED25519_SIGNATURE_TYPE = 0x01
"""The signed-note signature type identifier byte of Ed25519 (c2sp.org/signed-note)."""

SAVED_CHECKPOINT_SUFFIX = ".checkpoint"
"""A signer's saved checkpoint is its key file's name and this (:mod:`otaudit.signerstate`)."""

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_KEY_ID_RE = re.compile(r"[0-9a-f]{8}")
_MAX_KEY_FILE_BYTES = 4096


# --------------------------------------------------------------------------------------------
# Key IDs and verifier key text


def note_key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID ``SHA-256(name || 0x0A || key_type || public key)[:4]``.

    c2sp.org/signed-note; ``key_type`` is the signature type byte (0x01 for Ed25519 note
    signatures, 0x04 for Ed25519 cosignature/v1 per c2sp.org/tlog-cosignature).
    """
    data = name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key
    return hashlib.sha256(data).digest()[:4]


def _key_payload(
    what: str,
    name: str,
    key_id_hex: str,
    key_b64: str,
    key_type: int,
    label: str,
    material: str,
    *,
    secret: bool,
) -> bytes:
    """Check the name, key-ID form and key data of a key text; return the 32-byte payload.

    ``secret`` keeps the key data itself out of every message.
    """
    problem = key_name_problem(name)
    if problem:
        raise ConfigError(f"{what}: {problem}")
    if not _KEY_ID_RE.fullmatch(key_id_hex):
        raise ConfigError(
            f"{what}: key id must be 8 lowercase hex digits, found {excerpt(key_id_hex)}"
        )
    raw = b64decode_strict(key_b64)
    if raw is None:
        found = f" ({len(key_b64)} characters found)" if secret else f", found {excerpt(key_b64)}"
        raise ConfigError(f"{what}: key data must be canonical standard base64{found}")
    if len(raw) != 33:
        raise ConfigError(
            f"{what}: key data must be 33 bytes (type byte 0x{key_type:02x} and a 32-byte "
            f"Ed25519 {material}), found {len(raw)} bytes"
        )
    if raw[0] != key_type:
        raise ConfigError(
            f"{what}: unsupported signature type 0x{raw[0]:02x}, "
            f"expected 0x{key_type:02x} ({label})"
        )
    return raw[1:]


def _check_key_id(what: str, claimed_hex: str, computed: bytes) -> None:
    if computed.hex() != claimed_hex:
        raise ConfigError(
            f"{what}: key id mismatch: the text says {claimed_hex}, "
            f"the name and key give {computed.hex()}"
        )


def parse_verifier_text(text: str, key_type: int, label: str) -> tuple[str, bytes]:
    """Parse ``<name>+<hex key ID>+<base64(key_type || 32-byte public key)>``; return both.

    Strict (c2sp.org/signed-note): the key ID must be 8 lowercase hex digits and equal to
    :func:`note_key_id` of the name, ``key_type`` and key; the key data canonical base64 of
    exactly 33 bytes starting with ``key_type``. ``label`` names the key type in messages
    (``"Ed25519"``). Returns ``(name, public key)``; raises :class:`~otaudit.errors.ConfigError`
    saying what was expected and what was found.
    """
    if not isinstance(text, str):
        raise ConfigError(f"verifier key must be a string, found {type(text).__name__}")
    parts = text.split("+", 2)  # the base64 key data may itself contain '+'
    if len(parts) != 3:
        raise ConfigError(
            f"verifier key must be '<name>+<key id>+<base64 key>', found {excerpt(text)}"
        )
    name, key_id_hex, key_b64 = parts
    payload = _key_payload("verifier key", name, key_id_hex, key_b64, key_type, label,
                           "public key", secret=False)  # fmt: skip
    _check_key_id("verifier key", key_id_hex, note_key_id(name, key_type, payload))
    return name, payload


# --------------------------------------------------------------------------------------------
# Keys


class NoteKey:
    """A named Ed25519 public key of one signed-note key type (c2sp.org/signed-note).

    Text form ``<name>+<8 lowercase hex key ID>+<base64(type || 32-byte public key)>``, key
    ID ``SHA-256(name || 0x0A || type || public key)[:4]``. Subclasses fix the type byte
    (``KEY_TYPE``) and define how a signature is checked.
    """

    KEY_TYPE: ClassVar[int]
    LABEL: ClassVar[str]
    __slots__ = ("_key_id", "_name", "_public", "_public_bytes")

    def __init__(self, name: str, public_key_bytes: bytes) -> None:
        """Make a key for ``name`` and a raw 32-byte Ed25519 public key.

        Raises :class:`~otaudit.errors.ConfigError` for an invalid name or key.
        """
        problem = key_name_problem(name)
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
        self._key_id = note_key_id(name, self.KEY_TYPE, public_key_bytes)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the text form strictly (see :func:`parse_verifier_text`); ConfigError if bad."""
        name, public_key = parse_verifier_text(text, cls.KEY_TYPE, cls.LABEL)
        return cls(name, public_key)

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID, ``SHA-256(name || 0x0A || type || public key)[:4]``."""
        return self._key_id

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_bytes

    def __str__(self) -> str:
        raw = bytes([self.KEY_TYPE]) + self._public_bytes
        return f"{self._name}+{self._key_id.hex()}+{b64encode(raw)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}.parse({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, NoteKey)
        return (self._name, self._public_bytes) == (other._name, other._public_bytes)

    def __hash__(self) -> int:
        return hash((self.KEY_TYPE, self._name, self._public_bytes))


class VerifierKey(NoteKey):
    """An Ed25519 signed-note verifier (public) key, type 0x01 (c2sp.org/signed-note).

    Build one with :meth:`parse` or :meth:`SigningKey.verifier`.
    """

    KEY_TYPE = ED25519_SIGNATURE_TYPE
    LABEL = "Ed25519"
    __slots__ = ()

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


class SigningKey:
    """An Ed25519 signed-note signing (private) key (c2sp.org/signed-note).

    The private text form is Go's ``golang.org/x/mod/sumdb/note`` encoding,
    ``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>``. Build one with
    :meth:`generate`, :meth:`from_seed`, :meth:`from_private_text` or :meth:`load`.
    """

    __slots__ = ("_path", "_private", "_seed", "_verifier", "saved_checkpoint")

    def __init__(self, name: str, seed: bytes) -> None:
        """Make a key from a name and a 32-byte Ed25519 seed (RFC 8032 private key).

        Raises :class:`~otaudit.errors.ConfigError` for an invalid name or seed.
        """
        problem = key_name_problem(name)
        if problem:
            raise ConfigError(problem)
        if not isinstance(seed, bytes) or len(seed) != 32:
            found = f"{len(seed)} bytes" if isinstance(seed, bytes) else type(seed).__name__
            raise ConfigError(f"Ed25519 seed must be 32 bytes, found {found}")
        self._seed = seed
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._verifier = VerifierKey(name, self._private.public_key().public_bytes_raw())
        self._path: Path | None = None
        #: Where a signer using this key keeps the latest checkpoint it signed, outside the
        #: database (:mod:`otaudit.signerstate`): ``<key file>.checkpoint`` next to the key
        #: file once the key is loaded or saved; None for a key made in memory.
        self.saved_checkpoint: Path | None = None

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

    @property
    def path(self) -> Path | None:
        """The key file this key was loaded from or saved to; None for a key made in memory."""
        return self._path

    def _at(self, path: Path) -> None:
        self._path = path
        self.saved_checkpoint = path.with_name(path.name + SAVED_CHECKPOINT_SUFFIX)

    def sign(self, text: bytes) -> bytes:
        """Return the raw 64-byte Ed25519 signature of ``text`` (RFC 8032)."""
        return self._private.sign(text)

    def to_private_text(self) -> str:
        """The private key text ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

        This is secret: whoever has it can sign as this key.
        """
        raw = bytes([ED25519_SIGNATURE_TYPE]) + self._seed
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{b64encode(raw)}"

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
        seed = _key_payload("private key", name, key_id_hex, key_b64, ED25519_SIGNATURE_TYPE,
                            "Ed25519", "seed", secret=True)  # fmt: skip
        key = cls(name, seed)
        _check_key_id("private key", key_id_hex, key.key_id)
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
        try:
            fd, tmp = open_temporary(target, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create key file {target}: {exc.strerror or exc}") from exc
        try:
            write_synced(fd, data, 0o600)
            publish(tmp, target, overwrite=False)
        except FileExistsError:
            raise ConfigError(f"refusing to overwrite existing key file {target}") from None
        except OSError as exc:
            raise ConfigError(f"cannot write key file {target}: {exc.strerror or exc}") from exc
        finally:
            remove_temporary(tmp)
        try:
            sync_directory(directory)
        except OSError as exc:
            if exc.filename is not None:  # it could not be opened
                raise ConfigError(
                    f"cannot open directory {directory} to sync key file {target}: "
                    f"{exc.strerror or exc}"
                ) from exc
            raise ConfigError(
                f"cannot sync directory {directory} after writing key file {target}: "
                f"{exc.strerror or exc}"
            ) from exc
        self._at(target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a private key file written by :meth:`save` (one optional trailing newline).

        Raises :class:`~otaudit.errors.ConfigError`, naming the path, if the file is missing,
        unreadable, not a regular file, too large, not UTF-8, malformed (see
        :meth:`from_private_text`), or if its permissions allow any group or other access.
        """
        source = Path(path)
        raw = read_small_file(source, "key file", _MAX_KEY_FILE_BYTES, private=True)
        if raw is None:
            raise ConfigError(f"key file {source} does not exist")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"key file {source} is not UTF-8 text") from None
        if text.endswith("\n"):
            text = text[:-1]
        try:
            key = cls.from_private_text(text)
        except ConfigError as exc:
            raise ConfigError(f"key file {source}: {exc}") from None
        key._at(source)
        return key

    def __repr__(self) -> str:
        return f"SigningKey(name={self.name!r}, key_id={self.key_id.hex()!r})"
