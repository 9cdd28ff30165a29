"""Specification tests for otaudit.merkle (RFC 9162 §2.1 Merkle trees).

The module is checked against:

* a naive reference written directly from the recursive definitions of RFC 9162 (MTH §2.1.1,
  PATH §2.1.3.1, PROOF/SUBPROOF §2.1.4.1), with its own hashing and list slicing;
* the known-answer vectors of the RFC 6962 reference implementation (also used by
  transparency-dev/merkle and the certificate-transparency code bases);
* named mutations of valid proofs, every one of which must be rejected;
* a "stored" tree of one million leaves that only keeps perfect aligned subtree hashes, used
  through the range functions the way a storage layer does.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from otaudit.errors import VerificationError
from otaudit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    range_hash,
    root_from_inclusion_proof,
    root_from_subtrees,
    root_hash,
    subtree_ranges,
    verify_consistency,
    verify_inclusion,
)

# ------------------------------------------------------------------------------------------
# Naive reference, straight from RFC 9162 §2.1 (recursion + slicing, independent hashing)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over the raw entries (RFC 9162 §2.1.1)."""
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = _k(n)
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1)."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (RFC 9162 §2.1.4.1)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 9162 §2.1.4.1)."""
    return ref_subproof(m, d, True)


REF_MAX = 64
REF_ENTRIES = [bytes([i % 251]) * (i % 7) + i.to_bytes(2, "big") for i in range(REF_MAX)]
REF_LEAVES = [leaf_hash(e) for e in REF_ENTRIES]


@pytest.mark.parametrize("size", range(REF_MAX + 1))
def test_root_hash_matches_reference(size: int) -> None:
    expected = ref_mth(REF_ENTRIES[:size])
    assert root_hash(REF_LEAVES[:size]) == expected
    assert range_hash(REF_LEAVES, 0, size) == expected
    assert (
        root_from_subtrees([range_hash(REF_LEAVES, b, e) for b, e in subtree_ranges(size)])
        == expected
    )


@pytest.mark.parametrize("size", range(1, REF_MAX + 1))
def test_inclusion_proofs_match_reference_and_verify(size: int) -> None:
    entries, leaves = REF_ENTRIES[:size], REF_LEAVES[:size]
    root = ref_mth(entries)
    for index in range(size):
        expected = ref_path(index, entries)
        proof = inclusion_proof(leaves, index)
        assert proof == expected, (index, size)
        assert root_from_inclusion_proof(leaves[index], index, size, proof) == root
        verify_inclusion(leaves[index], index, size, proof, root)


@pytest.mark.parametrize("size2", range(1, REF_MAX + 1))
def test_consistency_proofs_match_reference_and_verify(size2: int) -> None:
    entries, leaves = REF_ENTRIES[:size2], REF_LEAVES[:size2]
    root2 = ref_mth(entries)
    for size1 in range(1, size2 + 1):
        expected = ref_proof(size1, entries)
        proof = consistency_proof(leaves, size1)
        assert proof == expected, (size1, size2)
        verify_consistency(size1, size2, proof, ref_mth(entries[:size1]), root2)
    verify_consistency(0, size2, [], EMPTY_ROOT, root2)


def test_reference_hashing_matches_module_primitives() -> None:
    assert leaf_hash(b"abc") == _sha(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == _sha(b"\x01" + b"L" * 32 + b"R" * 32)
    assert _sha(b"") == EMPTY_ROOT
    assert HASH_SIZE == 32


# ------------------------------------------------------------------------------------------
# Known answers: the RFC 6962 reference test leaves and their roots and proofs

KAT_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
KAT_ENTRIES = [bytes.fromhex(h) for h in KAT_LEAVES]

KAT: dict[str, Any] = {
    "empty_root": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "roots": {
        "1": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "2": "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "3": "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "4": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "5": "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "6": "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "7": "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "8": "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    },
    # Leaf indices are 0-based here (the reference tests number leaves from 1).
    "inclusion": [
        {"index": 0, "size": 1, "proof": []},
        {
            "index": 0,
            "size": 8,
            "proof": [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        },
        {
            "index": 5,
            "size": 8,
            "proof": [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        },
        {
            "index": 2,
            "size": 3,
            "proof": ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        },
        {
            "index": 1,
            "size": 5,
            "proof": [
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        },
    ],
    "consistency": [
        {"size1": 1, "size2": 1, "proof": []},
        {
            "size1": 1,
            "size2": 8,
            "proof": [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        },
        {
            "size1": 6,
            "size2": 8,
            "proof": [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        },
        {
            "size1": 2,
            "size2": 5,
            "proof": [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        },
    ],
}


def _kat_root(size: int) -> bytes:
    if size == 0:
        return bytes.fromhex(KAT["empty_root"])
    return bytes.fromhex(KAT["roots"][str(size)])


def test_kat_empty_root() -> None:
    assert EMPTY_ROOT.hex() == KAT["empty_root"]
    assert root_hash([]) == EMPTY_ROOT
    assert root_from_subtrees([]) == EMPTY_ROOT
    assert ref_mth([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_kat_roots(size: int) -> None:
    leaves = [leaf_hash(e) for e in KAT_ENTRIES[:size]]
    assert root_hash(leaves).hex() == KAT["roots"][str(size)]
    assert ref_mth(KAT_ENTRIES[:size]).hex() == KAT["roots"][str(size)]


@pytest.mark.parametrize(
    "case", KAT["inclusion"], ids=lambda c: f"index{c['index']}-size{c['size']}"
)
def test_kat_inclusion(case: dict[str, Any]) -> None:
    index, size = case["index"], case["size"]
    leaves = [leaf_hash(e) for e in KAT_ENTRIES[:size]]
    proof = [bytes.fromhex(h) for h in case["proof"]]
    assert inclusion_proof(leaves, index) == proof
    verify_inclusion(leaves[index], index, size, proof, _kat_root(size))


@pytest.mark.parametrize(
    "case", KAT["consistency"], ids=lambda c: f"size{c['size1']}-to-size{c['size2']}"
)
def test_kat_consistency(case: dict[str, Any]) -> None:
    size1, size2 = case["size1"], case["size2"]
    leaves = [leaf_hash(e) for e in KAT_ENTRIES[:size2]]
    proof = [bytes.fromhex(h) for h in case["proof"]]
    assert consistency_proof(leaves, size1) == proof
    verify_consistency(size1, size2, proof, _kat_root(size1), _kat_root(size2))


# ------------------------------------------------------------------------------------------
# Mutations: each must be rejected with VerificationError

MUT_LEAVES = [leaf_hash(b"mutation-%d" % i) for i in range(32)]


def _flip(h: bytes, bit: int, byte: int = 0) -> bytes:
    return h[:byte] + bytes([h[byte] ^ (1 << bit)]) + h[byte + 1 :]


def _inclusion_base(index: int, size: int) -> dict[str, Any]:
    leaves = MUT_LEAVES[:size]
    return {
        "leaf_hash": leaves[index],
        "index": index,
        "tree_size": size,
        "proof": inclusion_proof(leaves, index),
        "root_hash": root_hash(leaves),
    }


Mutation = Callable[[dict[str, Any]], dict[str, Any]]


def _cases(table: list[tuple[str, Mutation]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("mutate", [m for _, m in table], ids=[n for n, _ in table])


def _bases(bases: dict[str, tuple[int, int]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("base", list(bases.values()), ids=list(bases))


INCLUSION_MUTATIONS: list[tuple[str, Mutation]] = [
    ("leaf-index-plus-1", lambda c: {**c, "index": c["index"] + 1}),
    ("leaf-index-minus-1", lambda c: {**c, "index": c["index"] - 1}),
    ("tree-size-doubled", lambda c: {**c, "tree_size": c["tree_size"] * 2}),
    (
        "modified-proof[0]-bit-3",
        lambda c: {**c, "proof": [_flip(c["proof"][0], 3), *c["proof"][1:]]},
    ),
    (
        "modified-proof[-1]-bit-0",
        lambda c: {**c, "proof": [*c["proof"][:-1], _flip(c["proof"][-1], 0)]},
    ),
    ("trailing-garbage", lambda c: {**c, "proof": [*c["proof"], b"\x42" * 32]}),
    ("trailing-duplicate-of-last", lambda c: {**c, "proof": [*c["proof"], c["proof"][-1]]}),
    ("trailing-root", lambda c: {**c, "proof": [*c["proof"], c["root_hash"]]}),
    ("missing-last-hash", lambda c: {**c, "proof": c["proof"][:-1]}),
    ("missing-first-hash", lambda c: {**c, "proof": c["proof"][1:]}),
    ("empty-proof", lambda c: {**c, "proof": []}),
    (
        "swapped-proof[0]-and-proof[1]",
        lambda c: {**c, "proof": [c["proof"][1], c["proof"][0], *c["proof"][2:]]},
    ),
    ("reversed-proof", lambda c: {**c, "proof": c["proof"][::-1]}),
    ("wrong-leaf", lambda c: {**c, "leaf_hash": MUT_LEAVES[c["index"] + 1]}),
    ("leaf-data-not-hashed", lambda c: {**c, "leaf_hash": b"mutation-%d" % c["index"]}),
    ("leaf-hash-of-leaf-hash", lambda c: {**c, "leaf_hash": leaf_hash(c["leaf_hash"])}),
    ("node-hash-as-leaf", lambda c: {**c, "leaf_hash": node_hash(c["leaf_hash"], c["leaf_hash"])}),
    ("wrong-root", lambda c: {**c, "root_hash": _flip(c["root_hash"], 7)}),
    ("empty-root", lambda c: {**c, "root_hash": EMPTY_ROOT}),
    ("hash-31-bytes", lambda c: {**c, "proof": [c["proof"][0][:31], *c["proof"][1:]]}),
    ("hash-33-bytes", lambda c: {**c, "proof": [c["proof"][0] + b"\x00", *c["proof"][1:]]}),
    ("leaf-hash-31-bytes", lambda c: {**c, "leaf_hash": c["leaf_hash"][:31]}),
    ("root-31-bytes", lambda c: {**c, "root_hash": c["root_hash"][:31]}),
    ("root-hex-string", lambda c: {**c, "root_hash": c["root_hash"].hex()}),
    ("proof-as-bytes", lambda c: {**c, "proof": b"".join(c["proof"])}),
    ("index-equals-size", lambda c: {**c, "index": c["tree_size"]}),
    ("index-greater-than-size", lambda c: {**c, "index": c["tree_size"] + 5}),
    ("negative-index", lambda c: {**c, "index": -1}),
    ("tree-size-zero", lambda c: {**c, "tree_size": 0}),
    ("index-is-bool", lambda c: {**c, "index": True}),
    ("index-is-float", lambda c: {**c, "index": float(c["index"])}),
]

INCLUSION_BASES = {
    "leaf-8-of-10": (8, 10),
    "leaf-6-of-13": (6, 13),
    "leaf-12-of-13": (12, 13),
    "leaf-0-of-16": (0, 16),
}

# An inclusion proof depends on the tree size only through the shape of the leaf's path (see
# test_sizes_are_bound_by_roots_not_by_proofs), so a size off by one is only detectable where
# it changes that shape: leaf 8 of 10 (sizes 9 and 11 give other paths) and leaf 12 of 13.
TREE_SIZE_MUTATIONS: list[tuple[str, Mutation]] = [
    ("tree-size-plus-1", lambda c: {**c, "tree_size": c["tree_size"] + 1}),
    ("tree-size-minus-1", lambda c: {**c, "tree_size": c["tree_size"] - 1}),
]
TREE_SIZE_BASES = {"leaf-8-of-10": (8, 10), "leaf-12-of-13": (12, 13)}


@_bases(INCLUSION_BASES)
def test_inclusion_mutation_base_is_valid(base: tuple[int, int]) -> None:
    args = _inclusion_base(*base)
    assert len(args["proof"]) >= 2
    verify_inclusion(**args)


@_bases(INCLUSION_BASES)
@_cases(INCLUSION_MUTATIONS)
def test_inclusion_mutation_rejected(mutate: Mutation, base: tuple[int, int]) -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(**mutate(_inclusion_base(*base)))


@_bases(TREE_SIZE_BASES)
@_cases(TREE_SIZE_MUTATIONS)
def test_inclusion_tree_size_mutation_rejected(mutate: Mutation, base: tuple[int, int]) -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(**mutate(_inclusion_base(*base)))


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (1, 2), (7, 8)])
def test_inclusion_small_tree_mutations(index: int, size: int) -> None:
    base = _inclusion_base(index, size)
    verify_inclusion(**base)
    with pytest.raises(VerificationError):
        verify_inclusion(**{**base, "leaf_hash": _flip(base["leaf_hash"], 1)})
    with pytest.raises(VerificationError):
        verify_inclusion(**{**base, "proof": [*base["proof"], base["root_hash"]]})
    with pytest.raises(VerificationError):
        verify_inclusion(**{**base, "index": size})


def _consistency_base(size1: int, size2: int) -> dict[str, Any]:
    leaves = MUT_LEAVES[:size2]
    return {
        "size1": size1,
        "size2": size2,
        "proof": consistency_proof(leaves, size1) if size1 else [],
        "root1": root_hash(leaves[:size1]),
        "root2": root_hash(leaves),
    }


CONSISTENCY_MUTATIONS: list[tuple[str, Mutation]] = [
    ("swapped-roots", lambda c: {**c, "root1": c["root2"], "root2": c["root1"]}),
    ("size1-greater-than-size2", lambda c: {**c, "size1": c["size2"], "size2": c["size1"]}),
    ("size1-zero-non-empty-proof", lambda c: {**c, "size1": 0, "root1": EMPTY_ROOT}),
    ("size1-zero-wrong-root1", lambda c: {**c, "size1": 0, "proof": []}),
    ("size1-plus-1", lambda c: {**c, "size1": c["size1"] + 1}),
    ("size1-minus-1", lambda c: {**c, "size1": c["size1"] - 1}),
    ("size2-equals-size1", lambda c: {**c, "size2": c["size1"]}),
    ("size2-doubled", lambda c: {**c, "size2": c["size2"] * 2}),
    ("negative-size1", lambda c: {**c, "size1": -1}),
    ("size1-is-bool", lambda c: {**c, "size1": True}),
    (
        "modified-proof[0]-bit-3",
        lambda c: {**c, "proof": [_flip(c["proof"][0], 3), *c["proof"][1:]]},
    ),
    (
        "modified-proof[-1]-bit-0",
        lambda c: {**c, "proof": [*c["proof"][:-1], _flip(c["proof"][-1], 0)]},
    ),
    ("trailing-garbage", lambda c: {**c, "proof": [*c["proof"], b"\x42" * 32]}),
    ("trailing-root2", lambda c: {**c, "proof": [*c["proof"], c["root2"]]}),
    ("missing-last-hash", lambda c: {**c, "proof": c["proof"][:-1]}),
    ("missing-first-hash", lambda c: {**c, "proof": c["proof"][1:]}),
    ("empty-proof", lambda c: {**c, "proof": []}),
    ("reversed-proof", lambda c: {**c, "proof": c["proof"][::-1]}),
    ("root1-prepended", lambda c: {**c, "proof": [c["root1"], *c["proof"]]}),
    ("wrong-root1", lambda c: {**c, "root1": _flip(c["root1"], 5)}),
    ("wrong-root2", lambda c: {**c, "root2": _flip(c["root2"], 5)}),
    ("hash-31-bytes", lambda c: {**c, "proof": [c["proof"][0][:31], *c["proof"][1:]]}),
    ("root1-31-bytes", lambda c: {**c, "root1": c["root1"][:31]}),
    ("root2-33-bytes", lambda c: {**c, "root2": c["root2"] + b"\x00"}),
    ("proof-as-bytes", lambda c: {**c, "proof": b"".join(c["proof"])}),
    ("proof-as-generator", lambda c: {**c, "proof": iter(c["proof"])}),
]

CONSISTENCY_BASES = {
    "5-to-13": (5, 13),
    "4-to-13": (4, 13),  # size1 a power of two: root1 is not part of the proof
    "13-to-14": (13, 14),
    "8-to-21": (8, 21),
}

# As for inclusion, size2 is bound by root2 rather than by the proof's shape; off-by-one
# sizes are detectable only where they change the shape of the proof.
SIZE2_MUTATIONS: list[tuple[str, Mutation]] = [
    ("size2-plus-1", lambda c: {**c, "size2": c["size2"] + 1}),
    ("size2-minus-1", lambda c: {**c, "size2": c["size2"] - 1}),
]
SIZE2_BASES = {"13-to-14": (13, 14), "7-to-8": (7, 8)}


@_bases(CONSISTENCY_BASES)
def test_consistency_mutation_base_is_valid(base: tuple[int, int]) -> None:
    args = _consistency_base(*base)
    assert len(args["proof"]) >= 2
    verify_consistency(**args)


@_bases(CONSISTENCY_BASES)
@_cases(CONSISTENCY_MUTATIONS)
def test_consistency_mutation_rejected(mutate: Mutation, base: tuple[int, int]) -> None:
    with pytest.raises(VerificationError):
        verify_consistency(**mutate(_consistency_base(*base)))


@_bases(SIZE2_BASES)
@_cases(SIZE2_MUTATIONS)
def test_consistency_size2_mutation_rejected(mutate: Mutation, base: tuple[int, int]) -> None:
    with pytest.raises(VerificationError):
        verify_consistency(**mutate(_consistency_base(*base)))


def test_sizes_are_bound_by_roots_not_by_proofs() -> None:
    """RFC 9162 proofs authenticate tree sizes only through the roots they are checked against.

    The proof for leaf 6 of 13 leaves is also a valid proof for "leaf 6 of 12" or "of 14"
    against the root of 13 leaves, because the leaf's path has the same shape in all three
    trees. Callers must take (size, root) together from one signed checkpoint.
    """
    args = _inclusion_base(6, 13)
    for size in (12, 14):
        verify_inclusion(**{**args, "tree_size": size})
    cargs = _consistency_base(5, 13)
    for size2 in (12, 14):
        verify_consistency(**{**cargs, "size2": size2})


@pytest.mark.parametrize("size", range(1, 21))
def test_every_single_bit_flip_is_rejected(size: int) -> None:
    leaves = MUT_LEAVES[:size]
    root = root_hash(leaves)
    for index in range(size):
        proof = inclusion_proof(leaves, index)
        flip = index % 8, (index * 7) % 32
        with pytest.raises(VerificationError):
            verify_inclusion(_flip(leaves[index], *flip), index, size, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(leaves[index], index, size, proof, _flip(root, *flip))
        for i in range(len(proof)):
            bad = [*proof[:i], _flip(proof[i], *flip), *proof[i + 1 :]]
            with pytest.raises(VerificationError):
                verify_inclusion(leaves[index], index, size, bad, root)
    for size1 in range(1, size):
        proof = consistency_proof(leaves, size1)
        root1 = root_hash(leaves[:size1])
        flip = size1 % 8, (size1 * 5) % 32
        with pytest.raises(VerificationError):
            verify_consistency(size1, size, proof, _flip(root1, *flip), root)
        with pytest.raises(VerificationError):
            verify_consistency(size1, size, proof, root1, _flip(root, *flip))
        for i in range(len(proof)):
            bad = [*proof[:i], _flip(proof[i], *flip), *proof[i + 1 :]]
            with pytest.raises(VerificationError):
                verify_consistency(size1, size, bad, root1, root)


EQUAL_AND_EMPTY_MUTATIONS: list[tuple[str, dict[str, Any]]] = [
    ("equal-sizes-non-empty-proof", {"size1": 5, "size2": 5, "proof": [b"\x00" * 32]}),
    ("equal-sizes-different-roots", {"size1": 5, "size2": 5, "root2": EMPTY_ROOT}),
    (
        "both-empty-wrong-root",
        {"size1": 0, "size2": 0, "root1": b"\x01" * 32, "root2": b"\x01" * 32},
    ),
    ("size1-zero-root1-not-empty-root", {"size1": 0, "size2": 5, "root1": b"\x01" * 32}),
    ("equal-sizes-proof-as-bytes", {"proof": b""}),
    ("size1-zero-proof-as-str", {"size1": 0, "root1": EMPTY_ROOT, "proof": ""}),
]


@pytest.mark.parametrize(
    "changes",
    [c for _, c in EQUAL_AND_EMPTY_MUTATIONS],
    ids=[n for n, _ in EQUAL_AND_EMPTY_MUTATIONS],
)
def test_consistency_degenerate_mutation_rejected(changes: dict[str, Any]) -> None:
    root5 = root_hash(MUT_LEAVES[:5])
    args: dict[str, Any] = {"size1": 5, "size2": 5, "proof": [], "root1": root5, "root2": root5}
    with pytest.raises(VerificationError):
        verify_consistency(**{**args, **changes})


def test_consistency_degenerate_cases_accepted() -> None:
    root5 = root_hash(MUT_LEAVES[:5])
    verify_consistency(5, 5, [], root5, root5)
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, root5)


def test_mismatch_message_carries_both_roots_in_hex() -> None:
    base = _inclusion_base(6, 13)
    wrong = _flip(base["root_hash"], 2)
    with pytest.raises(VerificationError) as excinfo:
        verify_inclusion(**{**base, "root_hash": wrong})
    assert str(excinfo.value) == (
        f"calculated root {base['root_hash'].hex()} != expected root {wrong.hex()}"
    )
    cbase = _consistency_base(5, 13)
    with pytest.raises(VerificationError) as excinfo:
        verify_consistency(**{**cbase, "root2": wrong})
    assert (
        str(excinfo.value)
        == f"calculated root2 {cbase['root2'].hex()} != expected root2 {wrong.hex()}"
    )


def test_malformed_messages_are_precise() -> None:
    base = _inclusion_base(6, 13)
    with pytest.raises(VerificationError, match=r"expected 4 hashes, got 5"):
        verify_inclusion(**{**base, "proof": [*base["proof"], b"\x00" * 32]})
    with pytest.raises(VerificationError, match=r"inclusion proof\[2\] must be 32 bytes, got 31"):
        verify_inclusion(**{**base, "proof": [*base["proof"][:2], b"\x00" * 31, base["proof"][3]]})
    with pytest.raises(VerificationError, match=r"got index=13 tree_size=13"):
        verify_inclusion(**{**base, "index": 13})
    with pytest.raises(VerificationError, match=r"got size1=13 size2=5"):
        verify_consistency(13, 5, [], EMPTY_ROOT, EMPTY_ROOT)


# ------------------------------------------------------------------------------------------
# Proof generation preconditions


def test_inclusion_proof_bad_arguments() -> None:
    with pytest.raises(
        ValueError, match=r"^inclusion proof requires 0 <= index < size, got index=5 size=3$"
    ):
        inclusion_proof(MUT_LEAVES[:3], 5)
    with pytest.raises(ValueError, match=r"got index=-1 size=3"):
        inclusion_proof(MUT_LEAVES[:3], -1)
    with pytest.raises(ValueError, match=r"got index=0 size=0"):
        inclusion_proof([], 0)
    with pytest.raises(ValueError, match=r"got index=3 size=3"):
        inclusion_proof_nodes(3, 3)


def test_consistency_proof_bad_arguments() -> None:
    with pytest.raises(
        ValueError, match=r"^consistency proof requires 0 < size1 <= size2, got size1=0 size2=3$"
    ):
        consistency_proof(MUT_LEAVES[:3], 0)
    with pytest.raises(ValueError, match=r"got size1=4 size2=3"):
        consistency_proof(MUT_LEAVES[:3], 4)
    with pytest.raises(ValueError, match=r"got size1=-1 size2=3"):
        consistency_proof_nodes(-1, 3)
    assert consistency_proof(MUT_LEAVES[:3], 3) == []


def test_range_hash_and_subtree_ranges_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"got begin=2 end=1 size=3"):
        range_hash(MUT_LEAVES[:3], 2, 1)
    with pytest.raises(ValueError, match=r"got begin=0 end=4 size=3"):
        range_hash(MUT_LEAVES[:3], 0, 4)
    with pytest.raises(ValueError, match=r"got size=-1"):
        subtree_ranges(-1)
    assert range_hash(MUT_LEAVES[:3], 2, 2) == EMPTY_ROOT


# ------------------------------------------------------------------------------------------
# The range functions


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, []),
        (1, [(0, 1)]),
        (2, [(0, 2)]),
        (3, [(0, 2), (2, 3)]),
        (7, [(0, 4), (4, 6), (6, 7)]),
        (8, [(0, 8)]),
        (13, [(0, 8), (8, 12), (12, 13)]),
        (
            10**6,
            [
                (0, 524288),
                (524288, 786432),
                (786432, 917504),
                (917504, 983040),
                (983040, 999424),
                (999424, 999936),
                (999936, 1000000),
            ],
        ),
    ],
)
def test_subtree_ranges_examples(size: int, expected: list[tuple[int, int]]) -> None:
    assert subtree_ranges(size) == expected


def _is_perfect_aligned(begin: int, end: int) -> bool:
    n = end - begin
    return n > 0 and n & (n - 1) == 0 and begin % n == 0


def _decomposes_into_aligned(begin: int, end: int) -> bool:
    return all(_is_perfect_aligned(begin + b, begin + e) for b, e in subtree_ranges(end - begin))


@pytest.mark.parametrize("size", [*range(REF_MAX + 1), 1000, 4097, 10**6, 2**40 + 12345])
def test_subtree_ranges_properties(size: int) -> None:
    ranges = subtree_ranges(size)
    assert len(ranges) == bin(size).count("1")
    pos = 0
    for begin, end in ranges:
        assert begin == pos and _is_perfect_aligned(begin, end)
        pos = end
    assert pos == size
    lengths = [e - b for b, e in ranges]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == len(lengths)


@pytest.mark.parametrize("size", range(REF_MAX + 1))
def test_root_from_subtrees_matches_root_hash(size: int) -> None:
    hashes = [ref_mth(REF_ENTRIES[b:e]) for b, e in subtree_ranges(size)]
    assert root_from_subtrees(hashes) == root_hash(REF_LEAVES[:size])


def test_root_from_subtrees_folds_from_the_right() -> None:
    a, b, c = (bytes([i]) * 32 for i in range(3))
    assert root_from_subtrees([a]) == a
    assert root_from_subtrees([a, b]) == node_hash(a, b)
    assert root_from_subtrees([a, b, c]) == node_hash(a, node_hash(b, c))


@pytest.mark.parametrize(
    ("index", "size", "expected"),
    [
        (0, 1, []),
        (0, 2, [(1, 2)]),
        (5, 8, [(4, 5), (6, 8), (0, 4)]),
        (2, 3, [(0, 2)]),
        (6, 7, [(4, 6), (0, 4)]),
        (1, 5, [(0, 1), (2, 4), (4, 5)]),
        (4, 5, [(0, 4)]),
    ],
)
def test_inclusion_proof_nodes_examples(
    index: int, size: int, expected: list[tuple[int, int]]
) -> None:
    assert inclusion_proof_nodes(index, size) == expected


@pytest.mark.parametrize(
    ("size1", "size2", "expected"),
    [
        (3, 3, []),
        (1, 8, [(1, 2), (2, 4), (4, 8)]),
        (6, 8, [(4, 6), (6, 8), (0, 4)]),
        (2, 5, [(2, 4), (4, 5)]),
        (4, 8, [(4, 8)]),
        (3, 7, [(2, 3), (3, 4), (0, 2), (4, 7)]),
        (7, 8, [(6, 7), (7, 8), (4, 6), (0, 4)]),
    ],
)
def test_consistency_proof_nodes_examples(
    size1: int, size2: int, expected: list[tuple[int, int]]
) -> None:
    assert consistency_proof_nodes(size1, size2) == expected


@pytest.mark.parametrize("size", range(1, REF_MAX + 1))
def test_proof_node_properties(size: int) -> None:
    for index in range(size):
        nodes = inclusion_proof_nodes(index, size)
        # Disjoint ranges that, with the leaf itself, cover the whole tree, growing upwards.
        covered = sorted([(index, index + 1), *nodes])
        assert [b for b, _ in covered] == [0, *[e for _, e in covered[:-1]]]
        assert covered[-1][1] == size
        if size & (size - 1) == 0:  # a perfect tree: siblings of sizes 1, 2, 4, ...
            assert [e - b for b, e in nodes] == [1 << h for h in range(len(nodes))]
        assert all(_decomposes_into_aligned(b, e) for b, e in nodes)
    for size1 in range(1, size + 1):
        nodes = consistency_proof_nodes(size1, size)
        assert all(0 <= b < e <= size for b, e in nodes)
        assert all(_decomposes_into_aligned(b, e) for b, e in nodes)
        # The nodes are disjoint, cover [size1, size) and, with root1, [0, size1).
        spans = sorted(nodes)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
        assert all(e <= size1 or b >= size1 for b, e in spans)
        assert sum(e - b for b, e in spans if b >= size1) == size - size1


# ------------------------------------------------------------------------------------------
# One million leaves, stored as perfect aligned subtrees only (the storage layer's view)

BIG = 10**6


class StoredTree:
    """Keeps ``levels[h][i]`` = hash of leaves ``[i * 2**h, (i + 1) * 2**h)``, nothing else."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.levels = [leaves]
        level = leaves
        while len(level) > 1:
            it = iter(level)
            level = [node_hash(a, b) for a, b in zip(it, it, strict=False)]
            self.levels.append(level)

    def subtree(self, begin: int, end: int) -> bytes:
        n = end - begin
        assert _is_perfect_aligned(begin, end), (begin, end)
        return self.levels[n.bit_length() - 1][begin // n]

    def range_hash(self, begin: int, end: int) -> bytes:
        return root_from_subtrees(
            [self.subtree(begin + b, begin + e) for b, e in subtree_ranges(end - begin)]
        )

    def root(self, size: int) -> bytes:
        return self.range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return [self.range_hash(b, e) for b, e in inclusion_proof_nodes(index, size)]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return [self.range_hash(b, e) for b, e in consistency_proof_nodes(size1, size2)]


@pytest.fixture(scope="module")
def big_leaves() -> list[bytes]:
    return [leaf_hash(i.to_bytes(8, "big")) for i in range(BIG)]


@pytest.fixture(scope="module")
def stored(big_leaves: list[bytes]) -> StoredTree:
    return StoredTree(big_leaves)


def test_big_root_hash_matches_stored_tree(big_leaves: list[bytes], stored: StoredTree) -> None:
    assert root_hash(big_leaves) == stored.root(BIG)


def test_big_random_inclusion_proofs(big_leaves: list[bytes], stored: StoredTree) -> None:
    rng = random.Random(9162)
    for _ in range(300):
        size = rng.randint(1, BIG)
        index = rng.randrange(size)
        proof = stored.inclusion_proof(index, size)
        root = stored.root(size)
        assert root_from_inclusion_proof(big_leaves[index], index, size, proof) == root
        verify_inclusion(big_leaves[index], index, size, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(big_leaves[index], index, size, proof, _flip(root, 0))


def test_big_random_consistency_proofs(stored: StoredTree) -> None:
    rng = random.Random(6962)
    for _ in range(300):
        size2 = rng.randint(1, BIG)
        size1 = rng.randint(1, size2)
        proof = stored.consistency_proof(size1, size2)
        verify_consistency(size1, size2, proof, stored.root(size1), stored.root(size2))
        if proof:
            with pytest.raises(VerificationError):
                verify_consistency(size1, size2, proof[:-1], stored.root(size1), stored.root(size2))


def test_big_in_memory_proofs_match_stored(big_leaves: list[bytes], stored: StoredTree) -> None:
    rng = random.Random(2024)
    size = BIG - rng.randrange(1000)
    leaves = big_leaves[:size]
    index = rng.randrange(size)
    assert inclusion_proof(leaves, index) == stored.inclusion_proof(index, size)
    size1 = rng.randint(size // 2, size)
    assert consistency_proof(leaves, size1) == stored.consistency_proof(size1, size)


def test_a_proof_that_does_not_reach_the_root_carries_both_roots() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(5)]
    root = root_hash(leaves)
    proof = inclusion_proof(leaves, 2)
    wrong = bytes(32)
    with pytest.raises(VerificationError) as info:
        verify_inclusion(leaves[2], 2, 5, proof, wrong)
    assert (info.value.expected, info.value.computed) == (wrong, root)
