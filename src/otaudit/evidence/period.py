"""The period's checkpoints: the one that opens it, the one that closes it, and the
consistency proof between them."""

from __future__ import annotations

from dataclasses import dataclass

from otaudit import merkle, tree
from otaudit.errors import ConfigError
from otaudit.record import rfc3339_ns
from otaudit.store.base import Store, StoredCheckpoint


@dataclass(frozen=True)
class PeriodCheckpoints:
    """The latest checkpoint signed at or before the period's start (None: the log had none
    yet, the period opens on the empty tree) and the first one signed at or after its end."""

    opening: StoredCheckpoint | None
    closing: StoredCheckpoint
    #: RFC 9162 §2.1.4 consistency proof from ``opening`` to ``closing``.
    proof: list[bytes]


def period_checkpoints(store: Store, from_ns: int, to_ns: int) -> PeriodCheckpoints:
    """The checkpoints around ``[from_ns, to_ns)``; ConfigError when no checkpoint was signed
    at or after the period's end (the period is not sealed yet)."""
    signed = store.checkpoints()
    closing = next((cp for cp in signed if cp.signed_at_ns >= to_ns), None)
    if closing is None:
        newest = (
            f"the newest was signed at {rfc3339_ns(signed[-1].signed_at_ns)} "
            f"(tree size {signed[-1].tree_size})"
            if signed
            else "the ledger has none yet"
        )
        raise ConfigError(
            f"the period ends at {rfc3339_ns(to_ns)}, after the newest signed checkpoint "
            f"({newest}): no checkpoint seals the whole period yet. End the period earlier "
            "(--to), or build the pack once the server has signed a checkpoint after its end"
        )
    opening = None
    for cp in signed:
        if cp.signed_at_ns <= from_ns and cp.tree_size <= closing.tree_size:
            opening = cp
    proof: list[bytes] = []
    if opening is not None and opening.tree_size:
        proof = tree.stored_consistency_proof(store, opening.tree_size, closing.tree_size)
        merkle.verify_consistency(
            opening.tree_size, closing.tree_size, proof, opening.root_hash, closing.root_hash
        )
    return PeriodCheckpoints(opening, closing, proof)
