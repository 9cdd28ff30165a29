"""Proofs an auditor can check with any RFC 9162 implementation.

``inclusion`` and ``consistency`` build the JSON documents that ``otaudit
prove`` prints, anchored to a signed checkpoint kept by the store. Hashes
are lowercase hex, sizes integers; ``leaf_input_b64`` is the record's
canonical bytes, so the leaf hash can be recomputed (RFC 9162 §2.1.1).

Each checkpoint is named with the verifier key that signed it, from the log's key
history (:mod:`otaudit.keyhistory`: the ledger's word, checked link by link; confirm the
keys out of band). A consistency proof across a key rotation also carries the rotation
records between its sizes, each with its inclusion proof in the newer tree, so whoever
trusts the older key can follow to the newer one.
"""

from __future__ import annotations

import base64
from typing import Any

from otaudit import merkle, tree
from otaudit.errors import IndexNotInTree, NoCheckpoint, SizesOutOfOrder, VerificationError
from otaudit.keyhistory import KeyHistory, load_history
from otaudit.retention.receipts import Receipt, read_receipts
from otaudit.store.base import Store, StoredCheckpoint


def checkpoint_at(store: Store, size: int | None) -> StoredCheckpoint:
    """The signed checkpoint of ``size`` (default: the latest); NoCheckpoint if none was signed."""
    stored = store.checkpoints()
    if not stored:
        raise NoCheckpoint("the ledger has no signed checkpoint yet", size)
    if size is None:
        return stored[-1]
    for cp in stored:
        if cp.tree_size == size:
            return cp
    sizes = [cp.tree_size for cp in stored]
    below = max((s for s in sizes if s < size), default=None)
    above = min((s for s in sizes if s > size), default=None)
    raise NoCheckpoint(
        f"no signed checkpoint at tree size {size} (nearest signed sizes: {below}, {above}); "
        "proofs are anchored to signed checkpoints",
        size,
        (below, above),
    )


def inclusion(store: Store, seq: int, size: int | None = None) -> dict[str, Any]:
    """The inclusion proof of record ``seq`` in the signed tree of ``size`` leaves.

    Requires ``0 <= seq < size`` (IndexNotInTree). A record whose payload a receipt
    removed (pruned or erased) is still proven, from its stored leaf hash, without
    ``leaf_input_b64`` and with ``payload`` (``pruned`` or ``erased``) and ``receipt_seq``;
    a record missing otherwise is a VerificationError naming its seq.
    """
    cp = checkpoint_at(store, size)
    if not 0 <= seq < cp.tree_size:
        raise IndexNotInTree(seq, cp.tree_size)
    record = next(store.iter_records(seq, seq + 1), None)
    removed: dict[str, Any] = {}
    if record is None or record.seq != seq:
        receipt = _receipt_naming(store, seq)
        if receipt is None:
            raise VerificationError(
                f"record seq {seq} is missing from the ledger; run `otaudit verify`", seq
            )
        leaf = store.nodes([(0, seq)])[0]
        verb = "pruned" if receipt.kind == "prune" else "erased"
        removed = {"payload": verb, "receipt_seq": receipt.seq}
    else:
        leaf = merkle.leaf_hash(record.sealed)
        removed = {"leaf_input_b64": base64.b64encode(record.sealed).decode("ascii")}
    hashes = tree.stored_inclusion_proof(store, seq, cp.tree_size)
    merkle.verify_inclusion(leaf, seq, cp.tree_size, hashes, cp.root_hash)
    return {
        "index": seq,
        "tree_size": cp.tree_size,
        "leaf_hash": leaf.hex(),
        **removed,
        "hashes": [h.hex() for h in hashes],
        "root_hash": cp.root_hash.hex(),
        "checkpoint": cp.note,
        **_keys(store, {"verifier_key": cp.tree_size}),
    }


def _receipt_naming(store: Store, seq: int) -> Receipt | None:
    """The latest receipt whose ranges hold ``seq`` (None: none does)."""
    found = None
    for receipt in read_receipts(store):
        if any(first <= seq <= last for first, last in receipt.ranges):
            found = receipt
    return found


def consistency(store: Store, size1: int, size2: int | None = None) -> dict[str, Any]:
    """The consistency proof between two signed checkpoints (``size2`` default: the latest).

    Requires ``size1 <= size2`` (SizesOutOfOrder).
    """
    first, second = checkpoint_at(store, size1), checkpoint_at(store, size2)
    if first.tree_size > second.tree_size:
        raise SizesOutOfOrder(first.tree_size, second.tree_size)
    if first.tree_size == 0:
        hashes: list[bytes] = []
    else:
        hashes = tree.stored_consistency_proof(store, first.tree_size, second.tree_size)
    merkle.verify_consistency(
        first.tree_size, second.tree_size, hashes, first.root_hash, second.root_hash
    )
    return {
        "size1": first.tree_size,
        "size2": second.tree_size,
        "root1": first.root_hash.hex(),
        "root2": second.root_hash.hex(),
        "hashes": [h.hex() for h in hashes],
        "checkpoint1": first.note,
        "checkpoint2": second.note,
        **_keys(store, {"verifier_key1": first.tree_size, "verifier_key2": second.tree_size}),
        **_rotations(store, first.tree_size, second.tree_size),
    }


def _history(store: Store) -> KeyHistory | None:
    """The log's key history; None for a store that records no key (a bare test store)."""
    return load_history(store) if store.meta("verifier_key") is not None else None


def _keys(store: Store, sizes: dict[str, int]) -> dict[str, str]:
    """Each named tree size's signing key, as verifier key text."""
    history = _history(store)
    if history is None:
        return {}
    return {name: str(history.key_for(size)) for name, size in sizes.items()}


def _rotations(store: Store, size1: int, size2: int) -> dict[str, list[dict[str, Any]]]:
    """``{"rotations": [...]}``: the rotation records that hand over in ``[size1, size2]``
    (``size1 - 1 <= seq < size2``: a checkpoint at ``size1`` that is a transition checkpoint
    was also signed by the older key), each proven into the tree of ``size2`` (the form of a
    witness's ``rotation.<size>``); {} if none."""
    history = _history(store)
    found = [r for r in history.rotations if size1 <= r.first_size <= size2] if history else []
    if not found:
        return {}
    return {"rotations": [proven_record(store, r.seq, size2) for r in found]}


def proven_record(store: Store, seq: int, size: int) -> dict[str, Any]:
    """Record ``seq`` and its inclusion proof in the tree of ``size`` (RFC 9162 §2.1.3):
    ``{"index", "tree_size", "leaf_input_b64", "hashes"}``."""
    record = next(store.iter_records(seq, seq + 1))
    hashes = tree.stored_inclusion_proof(store, seq, size)
    return {
        "index": seq,
        "tree_size": size,
        "leaf_input_b64": base64.b64encode(record.sealed).decode("ascii"),
        "hashes": [h.hex() for h in hashes],
    }
