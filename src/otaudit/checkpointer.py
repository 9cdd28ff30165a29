"""The checkpointer: signs the tree head, once it has checked that the tree extends what
this signer signed before (the checkpoint saved outside the database), and hands each
checkpoint to a witness directory. The sequencer (:mod:`otaudit.ledger`) calls it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from otaudit import keyhistory, merkle, signerstate, tree
from otaudit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from otaudit.errors import ConfigError, StoreError, VerificationError
from otaudit.keys import SigningKey
from otaudit.smallfile import read_small_file
from otaudit.store.base import Store, StoredCheckpoint
from otaudit.witness import ConsistencyProof, export_checkpoint

log = logging.getLogger("otaudit.ledger")


class Checkpointer:
    """Signs tree heads, each only after it proves consistent with the previous one.

    "The previous one" is both the latest checkpoint in the store and the one this signer
    saved outside it, next to its key (:mod:`otaudit.signerstate`, DESIGN invariant 10). A
    tree that does not extend the saved checkpoint (a database rewritten, truncated or rolled
    back by someone without the key) is refused with a ``VerificationError``, on the first
    call even when there is nothing new to sign. A signer without a saved checkpoint whose
    store holds checkpoints (the first start after an upgrade) adopts the latest stored one
    that verifies under its key, with a warning.

    With ``witness_dir``, each new checkpoint is also written there for witnesses
    (``checkpoint.<size>`` and ``proof.<size>``, see :mod:`otaudit.witness`); a failure to
    write is logged and changes nothing else.
    """

    def __init__(
        self,
        store: Store,
        key: SigningKey,
        origin: str,
        witness_dir: Path | None = None,
        *,
        saved_path: Path | None = None,
    ) -> None:
        """``saved_path`` defaults to ``key.saved_checkpoint`` (next to its key file);
        ConfigError if there is none, or if the file cannot be read or written there."""
        self.store = store
        self.key = key
        self.origin = origin
        saved_path = saved_path or key.saved_checkpoint
        if saved_path is None:
            raise ConfigError("a signer needs a file for its saved checkpoint: a key from memory")
        self.saved_path = saved_path
        signerstate.check_writable(saved_path)
        read_small_file(saved_path, "saved checkpoint", signerstate.MAX_FILE_BYTES)
        self._checked = False  # the tree was checked against the saved checkpoint
        existing = store.checkpoints()
        self.latest: StoredCheckpoint | None = existing[-1] if existing else None
        self.witness_dir = witness_dir
        # The last checkpoint written to witness_dir; each proof there starts from it.
        self._exported = self.latest

    def checkpoint(self) -> StoredCheckpoint | None:
        """Sign and store a checkpoint for the current tree size if it grew; return it.

        Several processes may append to one shared store: only the one holding the
        store's signer turn signs, starting from the latest checkpoint in the store.
        """
        with self.store.signer_turn() as mine:
            if not mine:
                return None
            latest = self.store.latest_checkpoint()
            if latest is not None and self.latest is not None:
                latest = max(latest, self.latest, key=lambda cp: cp.tree_size)
            self.latest = latest
            size = self.store.tree_size()
            grown = latest is None or latest.tree_size < size
            if not grown and self._checked:
                return None
            root = tree.stored_root(self.store, size)
            # 1. The tree must extend the checkpoint saved outside the store.
            saved = self._saved()
            if saved is not None:
                where = f"the checkpoint at size {saved.tree_size} saved in {self.saved_path}"
                if saved.tree_size > size:
                    raise VerificationError(
                        f"refusing to sign tree size {size}: {where} is larger: the ledger "
                        "lost records this signer signed (truncated, or rolled back to an "
                        "older copy)"
                    )
                self._check_extends(saved.tree_size, saved.root_hash, size, root, where)
            self._checked = True
            return self._sign(size, root, latest) if grown else None

    def _saved(self) -> Checkpoint | None:
        """The saved checkpoint; without one, the latest stored checkpoint signed by this
        signer's key, adopted (and saved) with a warning."""
        verifier = self.key.verifier()
        try:
            saved = signerstate.load(self.saved_path, verifier, self.origin)
        except VerificationError:
            if self.store.meta("verifier_key") is None:
                raise  # no key history to try
            saved = self._saved_before_rotation()
        if saved is not None:
            return saved
        for stored in reversed(self.store.checkpoints()):
            try:
                adopted = open_checkpoint(stored.note, verifier, self.origin)
            except VerificationError:
                continue
            log.warning(
                "no saved checkpoint at %s: adopting the latest checkpoint in the ledger "
                "signed by this log's key, at tree size %d (expected on the first start after "
                "an upgrade; otherwise the file was removed, and only `otaudit verify` with a "
                "checkpoint kept elsewhere can tell whether the ledger was rewritten before)",
                self.saved_path,
                adopted.tree_size,
            )
            signerstate.save(self.saved_path, stored.note)
            return adopted
        return None

    def _saved_before_rotation(self) -> Checkpoint:
        """The saved checkpoint, signed by the key in force at its size when that is not
        this signer's key: the last one the previous key signed before a key rotation that
        signed no transition checkpoint (:mod:`otaudit.keyhistory`); VerificationError if it
        is not signed by that key either."""
        history = keyhistory.load_history(self.store)
        data = read_small_file(self.saved_path, "saved checkpoint", signerstate.MAX_FILE_BYTES)
        assert data is not None
        try:
            return history.open_checkpoint(data, self.origin)
        except VerificationError as exc:
            raise VerificationError(f"saved checkpoint {self.saved_path}: {exc}") from exc

    def _check_extends(
        self, size1: int, root1: bytes, size2: int, root2: bytes, where: str
    ) -> list[bytes]:
        """The consistency proof from ``size1`` to ``size2`` (RFC 9162 §2.1.4), checked."""
        proof = tree.stored_consistency_proof(self.store, size1, size2) if 0 < size1 < size2 else []
        try:
            merkle.verify_consistency(size1, size2, proof, root1, root2)
        except VerificationError as exc:
            raise VerificationError(
                f"refusing to sign tree size {size2}: not consistent with {where}: {exc}"
            ) from exc
        return proof

    def _sign(self, size: int, root: bytes, latest: StoredCheckpoint | None) -> StoredCheckpoint:
        retired_at = keyhistory.retired_at(self.store, self.key.verifier())
        if retired_at is not None:
            # 0. A server still running with a key `otaudit key rotate` retired signs nothing.
            raise VerificationError(
                f"refusing to sign tree size {size}: this server's signing key was retired by "
                f"the key rotation at seq {retired_at}; restart `otaudit serve` to sign with "
                "the new key"
            )
        proof: list[bytes] = []
        if latest is not None and latest.tree_size > 0:
            # 2. The new head must extend the previous signed one in the store.
            where = f"the checkpoint at size {latest.tree_size}"
            proof = self._check_extends(latest.tree_size, latest.root_hash, size, root, where)
        # 3. Sign the C2SP checkpoint; save it outside the store, then store it (a crash
        # between the two leaves the saved file ahead of the store, which is safe).
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.key)
        cp = StoredCheckpoint(size, root, time.time_ns(), note)
        signerstate.save(self.saved_path, note)
        self.store.add_checkpoint(cp)
        self.latest = cp
        if self.witness_dir is not None:
            self._export(self.witness_dir, cp, latest, proof)
        return cp

    def _export(
        self,
        directory: Path,
        cp: StoredCheckpoint,
        previous: StoredCheckpoint | None,
        proof: list[bytes],
    ) -> None:
        """Write ``cp`` with a consistency proof from the last checkpoint written there.

        That is the previous signed checkpoint unless writing it failed, so that the files
        always chain for a witness. Failures are logged; the checkpoint stays in the ledger.
        """
        base = self._exported
        try:
            if base is None or base.tree_size == 0:
                proof = []
            elif previous is None or base.tree_size != previous.tree_size:
                proof = tree.stored_consistency_proof(self.store, base.tree_size, cp.tree_size)
            size1 = base.tree_size if base is not None else 0
            export_checkpoint(
                directory, cp.note, ConsistencyProof(size1, cp.tree_size, tuple(proof))
            )
        except (OSError, StoreError) as exc:
            log.error(
                "checkpoint at tree size %d not written to witness directory %s: %s",
                cp.tree_size,
                directory,
                exc,
            )
            return
        self._exported = cp
