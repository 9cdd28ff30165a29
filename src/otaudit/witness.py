"""Witnessing: cosigned checkpoints, so that a log cannot show different histories.

A witness keeps, for every log it trusts, the latest checkpoint it accepted, and cosigns a
new checkpoint only if it is consistent with that one. Once it accepted size N with root R it
never cosigns anything inconsistent with (N, R): a smaller tree (rollback), another root at
size N, or a larger tree without a verifying RFC 9162 consistency proof from N (fork). The
first checkpoint it sees of a log is accepted as it is (trust on first use). This follows
https://c2sp.org/tlog-witness (the checks of ``add-checkpoint``, with files instead of HTTP)
and https://c2sp.org/tlog-cosignature (the Ed25519 ``cosignature/v1`` format):

* the signed message is ``cosignature/v1\\n``, ``time <POSIX seconds>\\n`` and the checkpoint's
  note text (including extension lines);
* the signature line is ``— <witness name> base64(key ID || 8-byte big-endian timestamp ||
  64-byte Ed25519 signature)``, with key ID ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``;
* the witness verifier key is ``<name>+<hex key ID>+<base64(0x04 || public key)>``.

The witness's private key file is an ordinary Ed25519 note key (:class:`SigningKey`, type
0x01), as Go's ``NewSignerForCosignatureV1`` (transparency-dev/formats) expects.

State directory (``otaudit witness --state DIR``)::

    DIR/witness.key            the witness signing key, mode 0600
    DIR/logs/<sha256(origin)>.json
                               a trusted log: origin, verifier key, last accepted checkpoint
    DIR/.lock                  serialises check-and-update across processes

A witness directory (``otaudit serve --witness-dir DIR``) holds ``checkpoint.<size>`` (the
signed note), ``proof.<size>`` (the consistency proof from the previous checkpoint written
there, JSON ``{"size1", "size2", "hashes"}``) and, once cosigned, ``cosigned.<size>``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from otaudit import merkle
from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SigningKey, VerifierKey, note_key_id, parse_verifier_text
from otaudit.note import _b64encode, parse_note, signature_line

__all__ = [
    "COSIGNATURE_V1_TYPE",
    "ConsistencyProof",
    "Cosigned",
    "Refused",
    "Witness",
    "WitnessKey",
    "WitnessVerifier",
    "cosignature_message",
    "export_checkpoint",
    "open_cosigned",
    "write_atomic",
]

COSIGNATURE_V1_TYPE = 0x04
"""The key type byte of Ed25519 cosignature/v1 keys (c2sp.org/tlog-cosignature)."""

KEY_FILE = "witness.key"
"""The witness signing key's file name inside the state directory."""

_MAX_TIMESTAMP = 2**63 - 1
_SIZE = r"(0|[1-9][0-9]*)"


class Refused(VerificationError):
    """The witness refuses a checkpoint: unknown log, bad signature, rollback or fork."""


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


@dataclass(frozen=True)
class ConsistencyProof:
    """A consistency proof between tree sizes, as ``proof.<size>`` and ``otaudit prove`` hold."""

    size1: int
    size2: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> bytes:
        """``{"size1": ..., "size2": ..., "hashes": [hex, ...]}``."""
        doc = {"size1": self.size1, "size2": self.size2, "hashes": [h.hex() for h in self.hashes]}
        return orjson.dumps(doc) + b"\n"

    @classmethod
    def parse(cls, data: bytes | str) -> ConsistencyProof:
        """Parse the JSON form (other members are ignored); :class:`Refused` if malformed."""
        try:
            doc: Any = orjson.loads(data)
            size1, size2, hashes = doc["size1"], doc["size2"], doc["hashes"]
            if not all(type(s) is int and s >= 0 for s in (size1, size2)) or size1 > size2:
                raise ValueError("size1 and size2 must be integers with 0 <= size1 <= size2")
            if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
                raise ValueError("hashes must be a list of hex strings")
            raw = tuple(bytes.fromhex(h) for h in hashes)
            if any(len(h) != merkle.HASH_SIZE for h in raw):
                raise ValueError("every hash must be 32 bytes")
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            raise Refused(f"malformed consistency proof: {exc}") from None
        return cls(size1, size2, raw)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, directory fsync."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def export_checkpoint(directory: Path, note: str, proof: ConsistencyProof) -> None:
    """Write ``proof.<size>`` then ``checkpoint.<size>`` into a witness directory (OSError)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / f"proof.{proof.size2}", proof.to_json())
    write_atomic(directory / f"checkpoint.{proof.size2}", note.encode("utf-8"))


@dataclass
class _Log:
    origin: str
    key: VerifierKey
    note: str | None  # the last accepted checkpoint, as the log signed it
    accepted: Checkpoint | None


class Witness:
    """A witness and its state directory (see the module docstring for the layout)."""

    def __init__(self, state: Path) -> None:
        """Open an initialised state directory; ConfigError if it has no witness key."""
        if not (state / KEY_FILE).exists():
            raise ConfigError(
                f"no witness key in {state}; run `otaudit witness init --state {state} "
                "--name NAME` first"
            )
        self.state = state
        self.key = WitnessKey(SigningKey.load(state / KEY_FILE))

    @classmethod
    def init(cls, state: Path, name: str) -> Witness:
        """Create the state directory and a new witness key called ``name``."""
        if (state / KEY_FILE).exists():
            raise ConfigError(f"{state} already holds a witness key ({state / KEY_FILE})")
        try:
            state.mkdir(mode=0o700, parents=True, exist_ok=True)
            (state / "logs").mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create witness state {state}: {exc.strerror}") from exc
        SigningKey.generate(name).save(state / KEY_FILE)
        return cls(state)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.state / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot lock witness state {self.state}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _log_path(self, origin: str) -> Path:
        return self.state / "logs" / f"{hashlib.sha256(origin.encode()).hexdigest()}.json"

    def _load(self, origin: str) -> _Log | None:
        path = self._log_path(origin)
        try:
            doc = orjson.loads(path.read_bytes())
            key = VerifierKey.parse(doc["log_key"])
            if doc["origin"] != origin or key.name != origin:
                raise ValueError(f"it is for log {doc['origin']!r}, not {origin!r}")
            note = doc["checkpoint"]
            accepted = open_checkpoint(note, key, origin) if note is not None else None
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"witness state {path} is unreadable: {exc}") from None
        except (ConfigError, VerificationError) as exc:
            raise ConfigError(f"witness state {path} is corrupt: {exc}") from None
        return _Log(origin, key, note, accepted)

    def _save(self, log: _Log) -> None:
        doc = {"origin": log.origin, "log_key": str(log.key), "checkpoint": log.note}
        path = self._log_path(log.origin)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            raise ConfigError(f"cannot write witness state {path}: {exc.strerror}") from exc

    def add_log(self, log_key: VerifierKey) -> bool:
        """Trust a log (origin: the key's name); False if it was already trusted with it."""
        with self._locked():
            known = self._load(log_key.name)
            if known is not None:
                if known.key != log_key:
                    raise ConfigError(
                        f"log {log_key.name!r} is already trusted with another key ({known.key})"
                    )
                return False
            self._save(_Log(log_key.name, log_key, None, None))
            return True

    def accepted(self, origin: str) -> Checkpoint | None:
        """The last checkpoint of ``origin`` this witness accepted (None: none or unknown)."""
        log = self._load(origin)
        return log.accepted if log is not None else None

    def cosign(
        self, note: str | bytes, proof: ConsistencyProof | None = None, *, now: int | None = None
    ) -> str:
        """Check a checkpoint against the state and cosign it; return the note with our line.

        The log must be trusted and have signed the note; then the rules of the module
        docstring apply (a proof is needed from the last accepted size unless the size is
        unchanged). On success the checkpoint becomes the last accepted one (stored before
        returning). Raises :class:`Refused`, leaving the state unchanged.
        """
        if isinstance(note, bytes):
            try:
                note = note.decode("utf-8")
            except UnicodeDecodeError:
                raise Refused("checkpoint is not UTF-8 text") from None
        try:
            text, signatures = parse_note(note)
            claimed = Checkpoint.parse_body(text)
        except VerificationError as exc:
            raise Refused(f"not a signed checkpoint: {exc}") from None
        origin = claimed.origin
        with self._locked():
            log = self._load(origin)
            if log is None:
                raise Refused(
                    f"unknown log {origin!r}: this witness does not trust it "
                    "(add its verifier key with `otaudit witness add-log`)"
                )
            try:
                cp = open_checkpoint(note, log.key, origin)
            except VerificationError as exc:
                raise Refused(f"checkpoint of log {origin!r}: {exc}") from None
            self._check(log, cp, proof)
            timestamp = int(time.time()) if now is None else now
            own = self.key.cosign(text.encode("utf-8"), timestamp)
            others = [
                signature_line(s.name, s.key_id, s.signature)
                for s in signatures
                if (s.name, s.key_id) != (self.key.name, self.key.key_id)
            ]
            self._save(_Log(origin, log.key, note, cp))
        return text + "\n" + "".join(others) + own

    @staticmethod
    def _check(log: _Log, cp: Checkpoint, proof: ConsistencyProof | None) -> None:
        what = f"refusing checkpoint of log {log.origin!r} at size {cp.tree_size}"
        if cp.tree_size == 0 and cp.root_hash != merkle.EMPTY_ROOT:
            raise Refused(f"{what}: the root of the empty tree must be SHA-256 of nothing")
        last = log.accepted
        if last is None:
            return  # the first checkpoint seen of this log is trusted as it is
        if cp.tree_size < last.tree_size:
            raise Refused(f"{what}: this witness already accepted size {last.tree_size} (rollback)")
        if cp.tree_size == last.tree_size:
            if cp.root_hash != last.root_hash:
                raise Refused(
                    f"{what}: root {cp.root_hash.hex()} differs from root "
                    f"{last.root_hash.hex()} accepted at that size (fork)"
                )
            return
        hint = f"`otaudit prove consistency --from {last.tree_size} --to {cp.tree_size}`"
        if proof is None:
            if last.tree_size != 0:
                raise Refused(
                    f"{what}: a consistency proof from size {last.tree_size}, the last size "
                    f"this witness accepted, is required (the log prints one with {hint})"
                )
            proof = ConsistencyProof(0, cp.tree_size, ())
        if proof.size2 != cp.tree_size:
            raise Refused(f"{what}: the consistency proof is to size {proof.size2}")
        if proof.size1 != last.tree_size:
            raise Refused(
                f"{what}: the consistency proof is from size {proof.size1}, but this witness "
                f"last accepted size {last.tree_size}; it needs {hint}"
            )
        try:
            merkle.verify_consistency(
                last.tree_size, cp.tree_size, proof.hashes, last.root_hash, cp.root_hash
            )
        except VerificationError as exc:
            raise Refused(
                f"{what}: not consistent with size {last.tree_size} accepted before (fork): {exc}"
            ) from None

    def run(self, directory: Path) -> Iterator[tuple[int, Path]]:
        """Cosign the ``checkpoint.<size>`` files of a witness directory in size order.

        Each one without a ``cosigned.<size>`` file is cosigned with ``proof.<size>`` (if
        present) and ``cosigned.<size>`` is written atomically; yields (size, path) for each.
        Stops at the first refusal by raising :class:`Refused`.
        """
        if not directory.is_dir():
            raise ConfigError(f"witness directory {directory} does not exist")
        found = sorted(
            (int(m.group(1)), path)
            for path in directory.iterdir()
            if (m := re.fullmatch(rf"checkpoint\.{_SIZE}", path.name))
        )
        for size, path in found:
            out = directory / f"cosigned.{size}"
            if out.exists():
                continue
            try:
                note = path.read_bytes()
                proof_path = directory / f"proof.{size}"
                proof = proof_path.read_bytes() if proof_path.exists() else None
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
            try:
                named = Checkpoint.parse_body(parse_note(note)[0]).tree_size
                if named != size:
                    raise Refused(f"the file name says size {size}, the checkpoint {named}")
                parsed = ConsistencyProof.parse(proof) if proof is not None else None
                cosigned = self.cosign(note, parsed)
            except VerificationError as exc:  # Refused included
                raise Refused(f"{path}: {exc}") from None
            try:
                write_atomic(out, cosigned.encode("utf-8"))
            except OSError as exc:
                raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
            yield size, out
