"""The Ed25519 cosignature/v1 format (https://c2sp.org/tlog-cosignature): witness keys,
cosignatures, and opening a cosigned checkpoint.

* the signed message is ``cosignature/v1\\n``, ``time <POSIX seconds>\\n`` and the checkpoint's
  note text (including extension lines);
* the signature line is ``— <witness name> base64(key ID || 8-byte big-endian timestamp ||
  64-byte Ed25519 signature)``, with key ID ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``;
* the witness verifier key is ``<name>+<hex key ID>+<base64(0x04 || public key)>``.

The witness's private key file is an ordinary Ed25519 note key (:class:`SigningKey`, type
0x01), as Go's ``NewSignerForCosignatureV1`` (transparency-dev/formats) expects.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import VerificationError
from otaudit.keys import SigningKey, VerifierKey, note_key_id, parse_verifier_text
from otaudit.note import _b64encode, parse_note, signature_line

COSIGNATURE_V1_TYPE = 0x04
"""The key type byte of Ed25519 cosignature/v1 keys (c2sp.org/tlog-cosignature)."""

_MAX_TIMESTAMP = 2**63 - 1


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    """The cosignature/v1 signed message: header, ``time`` line, then the note text."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp must be in [0, 2**63 - 1], found {timestamp}")
    return b"cosignature/v1\ntime %d\n" % timestamp + body


class WitnessVerifier:
    """A witness's cosignature/v1 verifier key (c2sp.org/tlog-cosignature, type 0x04)."""

    __slots__ = ("_key_id", "_name", "_public", "_public_bytes")

    def __init__(self, name: str, public_key_bytes: bytes) -> None:
        """Make a verifier from a key name and a raw 32-byte Ed25519 public key (ConfigError)."""
        VerifierKey(name, public_key_bytes)  # the same rules for names and keys
        self._public = Ed25519PublicKey.from_public_bytes(public_key_bytes)
        self._name = name
        self._public_bytes = public_key_bytes
        self._key_id = note_key_id(name, COSIGNATURE_V1_TYPE, public_key_bytes)

    @classmethod
    def parse(cls, text: str) -> WitnessVerifier:
        """Parse ``<name>+<hex key ID>+<base64(0x04 || public key)>``; ConfigError if bad."""
        name, public = parse_verifier_text(text, COSIGNATURE_V1_TYPE, "Ed25519 cosignature/v1")
        return cls(name, public)

    @property
    def name(self) -> str:
        """The witness name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID, ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``."""
        return self._key_id

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_bytes

    def verify(self, body: bytes, signature: bytes) -> int:
        """Check ``timestamp || Ed25519 signature`` (72 bytes) over ``body``; return the time."""
        if len(signature) != 72:
            raise VerificationError(
                f"cosignature must be 72 bytes (timestamp and Ed25519 signature), "
                f"found {len(signature)} bytes"
            )
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > _MAX_TIMESTAMP:
            raise VerificationError(f"cosignature timestamp {timestamp} exceeds 2**63 - 1")
        try:
            self._public.verify(signature[8:], cosignature_message(body, timestamp))
        except InvalidSignature:
            raise VerificationError(
                f"cosignature does not verify with witness key {self._name}+{self._key_id.hex()}"
            ) from None
        return timestamp

    def __str__(self) -> str:
        raw = bytes([COSIGNATURE_V1_TYPE]) + self._public_bytes
        return f"{self._name}+{self._key_id.hex()}+{_b64encode(raw)}"

    def __repr__(self) -> str:
        return f"WitnessVerifier.parse({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WitnessVerifier):
            return NotImplemented
        return (self._name, self._public_bytes) == (other._name, other._public_bytes)

    def __hash__(self) -> int:
        return hash((self._name, self._public_bytes))


class WitnessKey:
    """A witness signing key that makes cosignature/v1 signatures (c2sp.org/tlog-cosignature)."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, key: SigningKey) -> None:
        """Wrap an Ed25519 :class:`SigningKey`; its name is the witness name."""
        self._key = key
        self._verifier = WitnessVerifier(key.name, key.public_key_bytes)

    @property
    def name(self) -> str:
        """The witness name."""
        return self._key.name

    @property
    def key_id(self) -> bytes:
        """The 4-byte cosignature/v1 key ID (type byte 0x04)."""
        return self._verifier.key_id

    def verifier(self) -> WitnessVerifier:
        """The matching :class:`WitnessVerifier`."""
        return self._verifier

    def cosign(self, body: bytes, timestamp: int) -> str:
        """The signature line cosigning the note text ``body`` at ``timestamp`` (seconds)."""
        sig = self._key.sign(cosignature_message(body, timestamp))
        return signature_line(self.name, self.key_id, timestamp.to_bytes(8, "big") + sig)


@dataclass(frozen=True)
class Cosigned:
    """A checkpoint and the time (POSIX seconds) a witness cosigned it."""

    checkpoint: Checkpoint
    timestamp: int


def open_cosigned(
    note: str | bytes, witness_key: WitnessVerifier, *, log_key: VerifierKey | None = None
) -> Cosigned:
    """Verify a witness's cosignature on a checkpoint note and parse the checkpoint.

    As in :func:`~otaudit.note.open_note`, lines from other keys are ignored, at least one
    line must be ``witness_key``'s (same name and 0x04 key ID) and every such line must
    verify; the latest timestamp is returned. With ``log_key`` the log's own signature (and
    its origin, the key name) is checked too. Raises :class:`~otaudit.errors.VerificationError`.
    """
    text, signatures = parse_note(note)
    body = text.encode("utf-8")
    times = []
    for sig in signatures:
        if sig.name == witness_key.name and sig.key_id == witness_key.key_id:
            try:
                times.append(witness_key.verify(body, sig.signature))
            except VerificationError as exc:
                raise VerificationError(f"signed note line {sig.line}: {exc}") from None
    if not times:
        who = f"{witness_key.name}+{witness_key.key_id.hex()}"
        raise VerificationError(f"checkpoint has no cosignature by witness {who}")
    if log_key is not None:
        cp = open_checkpoint(note, log_key, log_key.name)
    else:
        cp = Checkpoint.parse_body(text)
    return Cosigned(cp, max(times))
