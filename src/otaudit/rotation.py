"""``otaudit key rotate``: replace the log's signing key, sealing the change in the ledger.

Run with the server stopped (only ``serve`` signs, DESIGN invariant 10; the rotation is the
one other signer, and two signers at once would sign with two keys). The steps, each durable
before the next:

1. The key in force is loaded and checked (:func:`otaudit.datadir.signing_key`), and the tree
   is signed up to its current size ``s`` by that key, after the usual consistency checks
   against the saved checkpoint (:class:`otaudit.checkpointer.Checkpointer`).
2. A new key of the same name is generated and saved as ``<key file>.next`` (mode 0600).
3. The rotation record is appended at seq ``s``: one of otaudit's own records whose note,
   signed by both keys, names the log, ``s``, the old and the new key
   (:mod:`otaudit.keyhistory`).
4. The transition checkpoint at size ``s + 1`` is signed by both keys, saved as the signer's
   saved checkpoint, stored, and (``witness_dir``) written for witnesses with the rotation
   record's inclusion proof (``rotation.<size>``).
5. The old key file becomes ``<key file>.retired-<old key id>`` (kept, mode 0600) and the new
   key becomes the key file: the next ``serve`` signs with it.

A crash after step 3 leaves the old key in place and the new one in ``<key file>.next``;
``serve`` then refuses to start, naming both (finish by hand: move the old key aside and the
new one in, as step 5 does).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from otaudit import datadir, merkle, proofs, signerstate, tree
from otaudit.access import Reader, log_request, seal_request
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.checkpointer import Checkpointer
from otaudit.errors import ConfigError, VerificationError
from otaudit.keyhistory import NEXT_SUFFIX, NOTE_ATTRIBUTE, ROTATE_ACTION, add_signature
from otaudit.keyhistory import rotation_note as _rotation_note
from otaudit.keys import SigningKey, VerifierKey
from otaudit.ownrecords import DirectAppender, append_one
from otaudit.record import Entry
from otaudit.smallfile import sync_directory
from otaudit.store.base import Store, StoredCheckpoint
from otaudit.witness import ConsistencyProof, export_checkpoint, write_atomic

#: The suffix of a retired key file; the old key's ID follows.
RETIRED_SUFFIX: Final = ".retired-"


@dataclass(frozen=True)
class Rotated:
    """What a rotation did: the record's seq, both keys, and where the files went."""

    seq: int
    old: VerifierKey
    new: VerifierKey
    key_path: Path
    retired_path: Path
    checkpoint: StoredCheckpoint


def rotation_entry(reader: Reader, note: str, old: VerifierKey, new: VerifierKey) -> Entry:
    """The sealed rotation record: who rotated, both keys, and the doubly signed ``note``."""
    attributes: dict[str, str | int] = {
        "audit.target": new.key_id.hex(),
        "audit.old_value": str(old),
        "audit.new_value": str(new),
        NOTE_ATTRIBUTE: note,
        "audit.result": "success",
    }
    body = f"{reader.actor}: signing key {old.key_id.hex()} replaced by {new.key_id.hex()}"
    return seal_request(log_request(reader, ROTATE_ACTION, "signing_key", body, attributes))


def rotation_document(store: Store, seq: int, size: int) -> bytes:
    """``rotation.<size>`` of a witness directory: the rotation record at ``seq`` (its
    canonical bytes, base64) and its RFC 9162 inclusion proof in the tree of ``size``."""
    return orjson.dumps(proofs.proven_record(store, seq, size)) + b"\n"


def rotate(
    data: Path,
    store: Store,
    reader: Reader,
    *,
    key_file: Path | None = None,
    witness_dir: Path | None = None,
) -> Rotated:
    """Rotate the signing key of the ledger in ``store`` (steps in the module docstring)."""
    # 1. The key in force, and everything appended so far signed by it.
    old = datadir.signing_key(data, store, None, key_file)
    path = old.path
    assert path is not None and old.saved_checkpoint is not None
    next_path = path.with_name(path.name + NEXT_SUFFIX)
    if os.path.lexists(next_path):
        raise ConfigError(
            f"{next_path} exists: an earlier `otaudit key rotate` did not finish; see "
            "docs/operations.md (key rotation) before rotating again"
        )
    origin = old.name
    Checkpointer(store, old, origin, witness_dir).checkpoint()
    with store.signer_turn() as mine:
        if not mine:
            raise ConfigError("another node is signing this ledger: stop every `otaudit serve`")
        # 2. The new key, saved beside the old one, not yet in force.
        new = SigningKey.generate(origin)
        new.save(next_path)
        # 3. The rotation record, at the seq its note names.
        seq = store.tree_size()
        note = _rotation_note(origin, seq, old, new)
        got = append_one(DirectAppender(store), rotation_entry(reader, note, old.verifier(),
                                                                new.verifier()))  # fmt: skip
        if got != seq:
            raise VerificationError(
                f"the rotation record was appended at seq {got}, not {seq}: something else "
                "appended at the same time (is `otaudit serve` running?); the record does not "
                f"rotate the key. Remove {next_path}, stop the server and rotate again",
                got,
            )
        # 4. The transition checkpoint, signed by both keys.
        cp = _sign_transition(store, old, new, origin, seq + 1, witness_dir, seq)
    # 5. The new key in force; the old one kept aside.
    retired = path.with_name(path.name + RETIRED_SUFFIX + old.key_id.hex())
    try:
        os.replace(path, retired)
        os.replace(next_path, path)
        sync_directory(path.parent)
    except OSError as exc:
        raise ConfigError(
            f"the rotation at seq {seq} is sealed but the key files were not swapped: "
            f"{exc.strerror or exc}; move {path} to {retired} and {next_path} to {path}"
        ) from exc
    return Rotated(seq, old.verifier(), new.verifier(), path, retired, cp)


def _sign_transition(
    store: Store,
    old: SigningKey,
    new: SigningKey,
    origin: str,
    size: int,
    witness_dir: Path | None,
    seq: int,
) -> StoredCheckpoint:
    """Sign the checkpoint at ``size`` with both keys, after checking that it extends the
    latest stored checkpoint (RFC 9162 §2.1.4); save, store and export it."""
    root = tree.stored_root(store, size)
    latest = store.latest_checkpoint()
    proof: list[bytes] = []
    if latest is not None and latest.tree_size > 0:
        proof = tree.stored_consistency_proof(store, latest.tree_size, size)
        merkle.verify_consistency(latest.tree_size, size, proof, latest.root_hash, root)
    note = add_signature(sign_checkpoint(Checkpoint(origin, size, root), old), new)
    cp = StoredCheckpoint(size, root, time.time_ns(), note)
    assert old.saved_checkpoint is not None
    signerstate.save(old.saved_checkpoint, note)
    store.add_checkpoint(cp)
    if witness_dir is not None:
        size1 = latest.tree_size if latest is not None else 0
        try:
            export_checkpoint(witness_dir, note, ConsistencyProof(size1, size, tuple(proof)))
            write_atomic(witness_dir / f"rotation.{size}", rotation_document(store, seq, size))
        except OSError as exc:
            raise ConfigError(
                f"checkpoint at tree size {size} not written to witness directory "
                f"{witness_dir}: {exc.strerror or exc}"
            ) from exc
    return cp
