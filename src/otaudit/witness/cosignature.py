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

from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import VerificationError
from otaudit.keys import NoteKey, SigningKey, VerifierKey
from otaudit.note import parse_note, signature_line

COSIGNATURE_V1_TYPE = 0x04
"""The key type byte of Ed25519 cosignature/v1 keys (c2sp.org/tlog-cosignature)."""

_MAX_TIMESTAMP = 2**63 - 1


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    """The cosignature/v1 signed message: header, ``time`` line, then the note text."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp must be in [0, 2**63 - 1], found {timestamp}")
    return b"cosignature/v1\ntime %d\n" % timestamp + body


class WitnessVerifier(NoteKey):
    """A witness's cosignature/v1 verifier key (c2sp.org/tlog-cosignature, type 0x04)."""

    KEY_TYPE = COSIGNATURE_V1_TYPE
    LABEL = "Ed25519 cosignature/v1"
    __slots__ = ()

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
