"""The witness: its state directory, and the decision to cosign a checkpoint or refuse it.

A witness keeps, for every log it trusts, the latest checkpoint it accepted, and cosigns a
new checkpoint only if it is consistent with that one. Once it accepted size N with root R it
never cosigns anything inconsistent with (N, R): a smaller tree (rollback), another root at
size N, or a larger tree without a verifying RFC 9162 consistency proof from N (fork). The
first checkpoint it sees of a log is accepted as it is (trust on first use). This follows
https://c2sp.org/tlog-witness (the checks of ``add-checkpoint``, with files instead of HTTP)
and https://c2sp.org/tlog-cosignature (see :mod:`otaudit.witness.cosignature`).

State directory (``otaudit witness --state DIR``)::

    DIR/witness.key            the witness signing key, mode 0600
    DIR/logs/<sha256(origin)>.json
                               a trusted log: origin, verifier key, last accepted checkpoint
    DIR/.lock                  serialises check-and-update across processes

The cosigned note carries the log's own signature lines (verified) and the
witness's cosignature; any other line (another witness's cosignature, a key
this witness does not know) is dropped, because the witness cannot vouch for
it, and :class:`Witnessed` names what was dropped. Notes and proofs are bounded
(:mod:`otaudit.witness.limits`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from otaudit import merkle
from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import parse_note, signature_line
from otaudit.smallfile import read_small_file, write_atomic
from otaudit.witness.cosignature import WitnessKey
from otaudit.witness.export import ConsistencyProof, Refused
from otaudit.witness.limits import (
    MAX_LINE_BYTES,
    MAX_NOTE_BYTES,
    MAX_PROOF_BYTES,
    check_checkpoint_text,
    check_note_size,
    shown,
)
from otaudit.witness.rotation import RotationProof, follow

KEY_FILE = "witness.key"
"""The witness signing key's file name inside the state directory."""

_SIZE = r"(0|[1-9][0-9]*)"
_MAX_STATE_BYTES = MAX_NOTE_BYTES + 4 * MAX_LINE_BYTES  # a note, the log key, JSON around them


@dataclass(frozen=True)
class Witnessed:
    """A cosigned checkpoint note, and the signature lines left out of it.

    ``dropped`` names (``name+key ID``, cut) each signature line of the input
    that the witness could not verify and so did not copy.
    """

    note: str
    dropped: tuple[str, ...] = field(default=())


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
        raw = read_small_file(path, "witness state", _MAX_STATE_BYTES)
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
            key = VerifierKey.parse(doc["log_key"])
            if doc["origin"] != origin or key.name != origin:
                raise ValueError(f"it is for log {shown(doc['origin'])}, not {shown(origin)}")
            note = doc["checkpoint"]
            accepted = open_checkpoint(note, key, origin) if note is not None else None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
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
        self,
        note: str | bytes,
        proof: ConsistencyProof | None = None,
        *,
        now: int | None = None,
        rotation: RotationProof | None = None,
    ) -> str:
        """The note of :meth:`witness`: the checkpoint with the log's lines and ours."""
        return self.witness(note, proof, now=now, rotation=rotation).note

    def witness(
        self,
        note: str | bytes,
        proof: ConsistencyProof | None = None,
        *,
        now: int | None = None,
        rotation: RotationProof | None = None,
    ) -> Witnessed:
        """Check a checkpoint against the state and cosign it (Refused, state unchanged).

        The note must fit the limits of :mod:`otaudit.witness.limits`, the log
        must be trusted and have signed it; then the rules of the module
        docstring apply (a proof is needed from the last accepted size unless
        the size is unchanged). On success the checkpoint becomes the last
        accepted one (stored before returning). The cosigned note holds the
        log's verified signature lines and this witness's new one; other
        lines are dropped and named in the result. With ``rotation`` (the
        transition checkpoint of a key rotation), the witness checks it
        (:mod:`otaudit.witness.rotation`) and trusts the log's new key from then on.
        """
        if isinstance(note, str):
            if len(note) > MAX_NOTE_BYTES:  # a character is at least one byte
                raise Refused(f"checkpoint note is over {MAX_NOTE_BYTES} bytes")
            note = note.encode("utf-8", "surrogatepass")
        check_note_size(note)
        try:
            decoded = note.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("checkpoint is not UTF-8 text") from None
        try:
            text, signatures = parse_note(decoded)
            check_checkpoint_text(text)
            origin = Checkpoint.parse_body(text).origin
        except VerificationError as exc:  # Refused included
            raise Refused(f"not a signed checkpoint: {exc}") from None
        with self._locked():
            log = self._load(origin)
            if log is None:
                raise Refused(
                    f"unknown log {shown(origin)}: this witness does not trust it "
                    "(add its verifier key with `otaudit witness add-log`)"
                )
            key = log.key
            if rotation is not None:
                last = log.accepted.tree_size if log.accepted is not None else 0
                key = follow(log.key, origin, Checkpoint.parse_body(text), last, rotation)
            try:
                cp = open_checkpoint(decoded, key, origin)  # every line of the key verifies
            except VerificationError as exc:
                raise Refused(f"checkpoint of log {shown(origin)}: {exc}") from None
            self._check(log, cp, proof)
            timestamp = int(time.time()) if now is None else now
            own = self.key.cosign(text.encode("utf-8"), timestamp)
            logs = (key.name, key.key_id)
            mine = (self.key.name, self.key.key_id)
            kept = [signature_line(s.name, s.key_id, s.signature)
                    for s in signatures if (s.name, s.key_id) == logs]  # fmt: skip
            dropped = tuple(
                f"{shown(s.name)}+{s.key_id.hex()}"
                for s in signatures
                if (s.name, s.key_id) not in (logs, mine)
            )
            self._save(_Log(origin, key, decoded, cp))
        return Witnessed(text + "\n" + "".join(kept) + own, dropped)

    @staticmethod
    def _check(log: _Log, cp: Checkpoint, proof: ConsistencyProof | None) -> None:
        what = f"refusing checkpoint of log {shown(log.origin)} at size {cp.tree_size}"
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

    def run(self, directory: Path) -> Iterator[tuple[int, Path, tuple[str, ...]]]:
        """Cosign the ``checkpoint.<size>`` files of a witness directory in size order.

        Each one without a ``cosigned.<size>`` file is cosigned with ``proof.<size>`` (if
        present) and ``cosigned.<size>`` is written atomically; yields (size, path, the
        signature lines dropped) for each. Both files must be regular files within the
        limits (ConfigError otherwise). Stops at the first refusal by raising :class:`Refused`.
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
            note = read_small_file(path, "checkpoint", MAX_NOTE_BYTES)
            proof_path = directory / f"proof.{size}"
            proof = read_small_file(proof_path, "consistency proof", MAX_PROOF_BYTES)
            if note is None:
                continue  # removed since the listing
            try:
                check_note_size(note)
                named = Checkpoint.parse_body(parse_note(note)[0]).tree_size
                if named != size:
                    raise Refused(f"the file name says size {size}, the checkpoint {named}")
                parsed = ConsistencyProof.parse(proof) if proof is not None else None
                done = self.witness(note, parsed, rotation=_rotation(directory, size))
            except VerificationError as exc:  # Refused included
                raise Refused(f"{path}: {exc}") from None
            try:
                write_atomic(out, done.note.encode("utf-8"))
            except OSError as exc:
                raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
            yield size, out, done.dropped


def _rotation(directory: Path, size: int) -> RotationProof | None:
    """``rotation.<size>`` of a witness directory (a key rotation's transition), if any."""
    data = read_small_file(directory / f"rotation.{size}", "key rotation proof", MAX_PROOF_BYTES)
    return None if data is None else RotationProof.parse(data)
