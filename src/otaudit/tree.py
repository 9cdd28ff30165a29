"""The stored tree: roots and RFC 9162 proofs from a store's subtree hashes.

A store keeps the hash of every perfect aligned subtree (``tree_nodes``), so
the root at any size and any proof take O(log n) node reads and no
rehashing of the log. The proof shapes come from ``otaudit.merkle``
(``inclusion_proof_nodes``, ``consistency_proof_nodes``); this module only
fetches the hashes of those ranges.
"""

from __future__ import annotations

from otaudit import merkle
from otaudit.store.base import Store


def range_keys(begin: int, end: int) -> list[tuple[int, int]]:
    """The (level, idx) stored nodes whose fold is MTH(leaves[begin:end]).

    Requires ``begin`` to be a multiple of every piece of the RFC 9162
    decomposition of ``end - begin``, which holds for every range that
    appears in a root or proof.
    """
    keys = []
    for b, e in merkle.subtree_ranges(end - begin):
        level = (e - b).bit_length() - 1
        keys.append((level, (begin + b) >> level))
    return keys


def range_hash(store: Store, begin: int, end: int) -> bytes:
    """MTH of leaves ``[begin, end)`` from stored nodes."""
    return merkle.root_from_subtrees(store.nodes(range_keys(begin, end)))


def root_at(store: Store, size: int) -> bytes:
    """The root hash of the first ``size`` leaves (RFC 9162 §2.1.1)."""
    return range_hash(store, 0, size) if size else merkle.EMPTY_ROOT


def inclusion_proof(store: Store, index: int, size: int) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves (§2.1.3.1)."""
    return [range_hash(store, b, e) for b, e in merkle.inclusion_proof_nodes(index, size)]


def consistency_proof(store: Store, size1: int, size2: int) -> list[bytes]:
    """The consistency proof from ``size1`` to ``size2`` (§2.1.4.1)."""
    return [range_hash(store, b, e) for b, e in merkle.consistency_proof_nodes(size1, size2)]
