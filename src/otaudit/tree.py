"""The stored tree: appending to its right edge, roots and RFC 9162 proofs from stored nodes.

A store keeps the hash of every perfect aligned subtree (``tree_nodes``:
node (level, idx) is the hash of leaves ``[idx * 2**level, (idx + 1) *
2**level)``), so the root at any size and any proof take O(log n) node reads
and no rehashing of the log, and an append needs only the right edge of the
tree (:func:`range_keys` of ``[0, size)``). The proof shapes come from
``otaudit.merkle`` (``inclusion_proof_nodes``, ``consistency_proof_nodes``);
this module only fetches the hashes of those ranges from something that
stores nodes (:class:`StoredNodes`: every ledger store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from otaudit import _core, merkle
from otaudit.errors import StoreError
from otaudit.record import RESOURCE_COLUMN, Entry


class StoredNodes(Protocol):
    """What the tree needs of a store: the hashes of stored perfect subtrees."""

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The stored hashes of the given (level, idx) perfect subtrees, in order."""
        ...


def range_keys(begin: int, end: int) -> list[tuple[int, int]]:
    """The (level, idx) stored nodes whose fold is MTH(leaves[begin:end]), largest first.

    Requires ``begin`` to be a multiple of every piece of the RFC 9162
    decomposition of ``end - begin``, which holds for every range that
    appears in a root or proof. ``range_keys(0, size)`` is the right edge of
    the tree of ``size`` leaves: all an append needs to extend it.
    """
    keys = []
    for b, e in merkle.subtree_ranges(end - begin):
        level = (e - b).bit_length() - 1
        keys.append((level, (begin + b) >> level))
    return keys


def stored_range_hash(store: StoredNodes, begin: int, end: int) -> bytes:
    """MTH of leaves ``[begin, end)`` from the store's nodes."""
    return merkle.root_from_subtrees(store.nodes(range_keys(begin, end)))


def stored_root(store: StoredNodes, size: int) -> bytes:
    """The root hash of the store's first ``size`` leaves (RFC 9162 §2.1.1)."""
    return stored_range_hash(store, 0, size) if size else merkle.EMPTY_ROOT


def stored_inclusion_proof(store: StoredNodes, index: int, size: int) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the store's tree of ``size`` leaves
    (§2.1.3.1), from its nodes."""
    return [stored_range_hash(store, b, e) for b, e in merkle.inclusion_proof_nodes(index, size)]


def stored_consistency_proof(store: StoredNodes, size1: int, size2: int) -> list[bytes]:
    """The consistency proof from ``size1`` to ``size2`` (§2.1.4.1) from the store's nodes."""
    return [stored_range_hash(store, b, e) for b, e in merkle.consistency_proof_nodes(size1, size2)]


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """The rows one append writes: records (seq, stored bytes, dedup key, *columns,
    resource_hash, resource_at), the distinct resources they keep once (hash, body,
    flat) and tree nodes (level, idx, hash); the sequence number given to each entry
    (None: already held) and the tree size after it."""

    records: list[tuple[Any, ...]]
    resources: list[tuple[bytes, bytes, str]]
    nodes: list[tuple[int, int, bytes]]
    seqs: list[int | None]
    tree_size: int


def plan_append(
    entries: Sequence[Entry],
    size: int,
    held: set[bytes],
    edge: list[bytes],
    *,
    no_resource: str | None = "",
) -> AppendPlan:
    """Number the entries not ``held`` from ``size`` on and compute the new tree nodes.

    ``held`` are the dedup keys the store already has; ``edge`` the hashes of
    ``range_keys(0, size)``, in that order. An entry that says where its resource lies
    is stored with the resource cut out and ``no_resource`` as its own ``resource``
    column (the resource goes to ``resources`` once). Called inside the store's write
    lock. The new nodes are hashed by the compiled core (:func:`otaudit._core.node_hash`,
    held equal to :func:`otaudit.merkle.node_hash`); StoreError if a stored node of the
    edge is not a 32-byte hash.
    """
    held = set(held)
    edge = list(edge)
    for at, digest in enumerate(edge):
        if len(digest) != merkle.HASH_SIZE:
            level, idx = range_keys(0, size)[at]
            raise StoreError(
                f"tree node level {level} idx {idx} is {len(digest)} bytes, not a hash;"
                " run `otaudit verify`"
            )
    node_hash = _core.node_hash
    records: list[tuple[Any, ...]] = []
    resources: dict[bytes, tuple[bytes, bytes, str]] = {}
    nodes: list[tuple[int, int, bytes]] = []
    seqs: list[int | None] = []
    for entry in entries:
        if entry.dedup_key in held:
            seqs.append(None)
            continue
        held.add(entry.dedup_key)
        seq = size
        size += 1
        seqs.append(seq)
        part, at = entry.resource, entry.resource_at
        if part is None or at < 0:
            records.append((seq, entry.sealed, entry.dedup_key, *entry.columns, None, None))
        else:
            sealed = entry.sealed
            stored = b"".join((sealed[:at], sealed[at + len(part.body) :]))
            columns: list[Any] = list(entry.columns)
            columns[RESOURCE_COLUMN] = no_resource
            records.append((seq, stored, entry.dedup_key, *columns, part.hash, at))
            if part.hash not in resources:
                resources[part.hash] = (part.hash, part.body, entry.columns.resource)
        level, idx, digest = 0, seq, entry.leaf
        nodes.append((0, seq, digest))
        while idx & 1:
            digest = node_hash(edge.pop(), digest)
            level += 1
            idx >>= 1
            nodes.append((level, idx, digest))
        edge.append(digest)
    return AppendPlan(records, list(resources.values()), nodes, seqs, size)
