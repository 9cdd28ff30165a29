"""RFC 9162 (Certificate Transparency v2) Merkle trees: hashes, proofs and their verification.

Everything here is a pure function over leaf hashes; nothing is stored. The definitions
follow RFC 9162 §2.1:

* a leaf hash is ``SHA-256(0x00 || data)`` and an interior node hash is
  ``SHA-256(0x01 || left || right)`` (§2.1.1);
* the Merkle Tree Hash (MTH) of ``n > 1`` leaves splits them at ``k``, the largest power of
  two smaller than ``n``, and hashes ``MTH(D[0:k])`` with ``MTH(D[k:n])`` (§2.1.1);
* inclusion proofs (§2.1.3) and consistency proofs (§2.1.4) are lists of subtree hashes.

Proof *generation* is split in two so that one algorithm serves in-memory and stored trees:

* :func:`inclusion_proof_nodes` and :func:`consistency_proof_nodes` say *which* subtrees a
  proof is made of, as half-open leaf ranges ``(begin, end)``, in proof order;
* :func:`range_hash` computes the hash of one such range from a list of leaf hashes. A store
  that keeps the hashes of perfect, aligned subtrees instead decomposes each range with
  :func:`subtree_ranges` (offset by ``begin``) and folds the stored hashes with
  :func:`root_from_subtrees`. In every range these functions return, ``begin`` is a multiple
  of the largest power of two not above ``end - begin``, so each of those pieces is a perfect
  subtree aligned to its size: ``(begin + b, begin + e)`` is the ``(begin + b) // (e - b)``-th
  subtree of height ``log2(e - b)``.

:func:`inclusion_proof` and :func:`consistency_proof` are exactly that composition.

Proof *verification* (:func:`verify_inclusion`, :func:`verify_consistency`) follows the
algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2: the roots are computed first, then compared,
and any malformed input or mismatch raises :class:`~otaudit.errors.VerificationError`.
Bad arguments to proof *generation* are programming errors and raise :class:`ValueError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from otaudit.errors import VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "consistency_proof",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_inclusion_proof",
    "root_from_subtrees",
    "root_hash",
    "subtree_ranges",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256, RFC 9162 §2.1.1)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""The Merkle Tree Hash of the empty list, ``SHA-256()`` (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Return the hash of a leaf entry, ``SHA-256(0x00 || data)`` (RFC 9162 §2.1.1)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the hash of an interior node, ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1).

    The children are not checked; callers pass 32-byte hashes.
    """
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``), RFC 9162 §2.1.1's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(level: list[bytes]) -> bytes:
    """MTH of a list of leaf hashes, computed level by level.

    Pairing nodes left to right and carrying an unpaired last node up unchanged builds the same
    tree as the recursive definition of RFC 9162 §2.1.1 (the left part is always the largest
    power of two), without recursion or slicing.
    """
    n = len(level)
    if n == 0:
        return EMPTY_ROOT
    sha, prefix = _sha256, _NODE_PREFIX
    while n > 1:
        it = iter(level)
        parents = [sha(prefix + left + right).digest() for left, right in zip(it, it, strict=False)]
        if n & 1:
            parents.append(level[-1])
        level = parents
        n = len(level)
    return level[0]


def range_hash(leaf_hashes: Sequence[bytes], begin: int, end: int) -> bytes:
    """Return the Merkle Tree Hash of ``leaf_hashes[begin:end]`` (RFC 9162 §2.1.1).

    An empty range hashes to :data:`EMPTY_ROOT`. This is the in-memory way of turning the ranges
    of :func:`inclusion_proof_nodes` and :func:`consistency_proof_nodes` into proof hashes.

    Raises :class:`ValueError` unless ``0 <= begin <= end <= len(leaf_hashes)``.
    """
    size = len(leaf_hashes)
    if not 0 <= begin <= end <= size:
        raise ValueError(
            f"range_hash requires 0 <= begin <= end <= size, "
            f"got begin={begin} end={end} size={size}"
        )
    return _mth(list(leaf_hashes[begin:end]))


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash (root) of a list of leaf hashes (RFC 9162 §2.1.1).

    The empty list gives :data:`EMPTY_ROOT`. Iterative, level by level: ``n - 1`` node
    hashes and O(n) memory, no recursion (about a second for a million leaves in CPython).
    """
    return _mth(list(leaf_hashes))


def subtree_ranges(size: int) -> list[tuple[int, int]]:
    """Split ``[0, size)`` into maximal perfect subtrees, left to right (RFC 9162 §2.1.1).

    Each range is half-open ``(begin, end)``, its length a power of two, one per set bit of
    ``size`` from the most significant down. These are the perfect subtrees hanging off the
    right edge of the RFC 9162 tree of ``size`` leaves (its "frontier"), each aligned to its
    own size; e.g. ``7 -> [(0, 4), (4, 6), (6, 7)]``.
    ``0`` gives ``[]``. Raises :class:`ValueError` for a negative size.
    """
    if size < 0:
        raise ValueError(f"subtree_ranges requires size >= 0, got size={size}")
    ranges: list[tuple[int, int]] = []
    begin = 0
    for bit in range(size.bit_length() - 1, -1, -1):
        if (size >> bit) & 1:
            end = begin + (1 << bit)
            ranges.append((begin, end))
            begin = end
    return ranges


def root_from_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Return the tree root given the hashes of its :func:`subtree_ranges`, left to right.

    Folds from the right with :func:`node_hash`: ``node(h0, node(h1, ... node(h[-2], h[-1])))``,
    which is the Merkle Tree Hash of RFC 9162 §2.1.1 since its left split is always the
    largest perfect subtree. An empty list gives :data:`EMPTY_ROOT`.
    """
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        root = node_hash(hashes[i], root)
    return root


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose hashes make up the inclusion proof of ``index``.

    This is the audit path ``PATH(index, D[size])`` of RFC 9162 §2.1.3.1, each element given as
    the half-open range ``(begin, end)`` of leaves whose Merkle Tree Hash it is, in proof order
    (from the leaf's sibling up to the child of the root). Left siblings are always perfect
    aligned subtrees; right siblings on the right edge of the tree may not be, in which case
    their hash is the root of :func:`subtree_ranges` of their length, offset by ``begin``.

    Raises :class:`ValueError` unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ValueError(
            f"inclusion proof requires 0 <= index < size, got index={index} size={size}"
        )
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _split_point(end - begin)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin = mid
    ranges.reverse()
    return ranges


def consistency_proof_nodes(size1: int, size2: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose hashes make up the consistency proof from size1 to size2.

    This is ``PROOF(size1, D[size2])`` of RFC 9162 §2.1.4.1 (via ``SUBPROOF``), each element
    given as the half-open range ``(begin, end)`` of leaves whose Merkle Tree Hash it is, in
    proof order. ``size1 == size2`` gives ``[]``.

    Raises :class:`ValueError` unless ``0 < size1 <= size2`` (RFC 9162 defines no proof from
    the empty tree, which is consistent with every tree).
    """
    if not 0 < size1 <= size2:
        raise ValueError(
            f"consistency proof requires 0 < size1 <= size2, got size1={size1} size2={size2}"
        )
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size2
    # ``complete`` is SUBPROOF's boolean b: true while the current subtree starts at leaf 0, so
    # that its old part is the whole old tree, whose hash the verifier already has (root1).
    complete = True
    while end != size1:
        mid = begin + _split_point(end - begin)
        if size1 <= mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin = mid
            complete = False
    if not complete:
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree of ``leaf_hashes``.

    RFC 9162 §2.1.3.1 ``PATH(index, D[n])`` with ``n = len(leaf_hashes)``: the hashes of the
    ranges of :func:`inclusion_proof_nodes`, computed with :func:`range_hash`. Costs O(n) hashes.

    Raises :class:`ValueError` unless ``0 <= index < len(leaf_hashes)``.
    """
    nodes = inclusion_proof_nodes(index, len(leaf_hashes))
    return [range_hash(leaf_hashes, begin, end) for begin, end in nodes]


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """Return the consistency proof from the first ``size1`` leaves to all of ``leaf_hashes``.

    RFC 9162 §2.1.4.1 ``PROOF(size1, D[n])`` with ``n = len(leaf_hashes)``: the hashes of the
    ranges of :func:`consistency_proof_nodes`, computed with :func:`range_hash`.

    Raises :class:`ValueError` unless ``0 < size1 <= len(leaf_hashes)``.
    """
    nodes = consistency_proof_nodes(size1, len(leaf_hashes))
    return [range_hash(leaf_hashes, begin, end) for begin, end in nodes]


# --------------------------------------------------------------------------------------------
# Verification


def _check_size(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise VerificationError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise VerificationError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise VerificationError(f"{name} must be {HASH_SIZE} bytes, got {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != HASH_SIZE:
        raise VerificationError(f"{name} must be {HASH_SIZE} bytes, got {len(raw)} bytes")
    return raw


def _check_sequence(proof: object, what: str) -> None:
    if isinstance(proof, bytes | bytearray | memoryview | str) or not isinstance(proof, Sequence):
        raise VerificationError(f"{what} must be a sequence of hashes, got {type(proof).__name__}")


def _check_proof(proof: Sequence[bytes], expected_len: int, what: str) -> list[bytes]:
    _check_sequence(proof, what)
    if len(proof) != expected_len:
        raise VerificationError(
            f"{what} has wrong length: expected {expected_len} hashes, got {len(proof)}"
        )
    return [_check_hash(f"{what}[{i}]", h) for i, h in enumerate(proof)]


def _mismatch(what: str, calculated: bytes, expected: bytes) -> VerificationError:
    return VerificationError(
        f"calculated {what} {calculated.hex()} != expected {what} {expected.hex()}",
        expected=expected,
        computed=calculated,
    )


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root implied by an inclusion proof (RFC 9162 §2.1.3.2, steps 1-4).

    Runs the verification algorithm of RFC 9162 §2.1.3.2 up to, but not including, the final
    comparison with a trusted root: the caller compares (see :func:`verify_inclusion`).

    Raises :class:`~otaudit.errors.VerificationError` if the input is malformed: ``index`` not
    in ``[0, tree_size)``, a proof of the wrong length for ``(index, tree_size)`` (missing or
    trailing hashes), or a leaf hash or proof element that is not 32 bytes.
    """
    index = _check_size("leaf index", index, 0)
    tree_size = _check_size("tree size", tree_size, 0)
    if index >= tree_size:
        raise VerificationError(
            f"inclusion proof requires 0 <= index < tree size, "
            f"got index={index} tree_size={tree_size}"
        )
    leaf = _check_hash("leaf hash", leaf_hash)
    path = _check_proof(proof, len(inclusion_proof_nodes(index, tree_size)), "inclusion proof")

    fn, sn = index, tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:  # cannot happen with a proof of the expected length; kept from the RFC
            raise VerificationError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # (if LSB(fn) was clear) until set or 0
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root_hash``.

    RFC 9162 §2.1.3.2. Computes the root with :func:`root_from_inclusion_proof`, then compares.
    Returns ``None`` on success; raises :class:`~otaudit.errors.VerificationError` on malformed
    input (see :func:`root_from_inclusion_proof`, and a ``root_hash`` that is not 32 bytes) or
    when the calculated root differs from ``root_hash``; the message carries both in hex.

    The proof binds ``tree_size`` only through ``root_hash``: where the leaf's path has the same
    shape in trees of other sizes, the same proof verifies with those sizes too. Take the size
    and the root together from one signed checkpoint.
    """
    expected = _check_hash("root hash", root_hash)
    calculated = root_from_inclusion_proof(leaf_hash, index, tree_size, proof)
    if calculated != expected:
        raise _mismatch("root", calculated, expected)


def _roots_from_consistency_proof(
    size1: int, size2: int, path: list[bytes], root1: bytes
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 2-6 for ``0 < size1 < size2``: the (root1, root2) implied."""
    if size1 & (size1 - 1) == 0:
        # size1 is a power of two: the old tree is a complete left subtree of the new tree and
        # its root (root1) is not part of the proof.
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # cannot happen with a proof of the expected length; kept from the RFC
            raise VerificationError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:  # (if LSB(fn) was clear) until set or 0
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is shorter than the tree is deep")
    return fr, sr


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of ``size2`` with ``root2``.

    RFC 9162 §2.1.4.2. Both roots are first computed from the proof, then compared with
    ``root1`` and ``root2``. Edge cases: ``size1 == size2`` needs an empty proof and equal
    roots; ``size1 == 0`` needs an empty proof and ``root1`` equal to :data:`EMPTY_ROOT` (the
    empty tree is a prefix of every tree).

    Returns ``None`` on success; raises :class:`~otaudit.errors.VerificationError` on any
    malformed input (negative sizes, ``size1 > size2``, a proof of the wrong length, hashes
    that are not 32 bytes) or mismatch; mismatch messages carry both values in hex.

    As with inclusion proofs, the sizes are bound through the roots: take each (size, root)
    pair from one signed checkpoint.
    """
    size1 = _check_size("size1", size1, 0)
    size2 = _check_size("size2", size2, 0)
    if size1 > size2:
        raise VerificationError(
            f"consistency proof requires size1 <= size2, got size1={size1} size2={size2}"
        )
    expected1 = _check_hash("root1", root1)
    expected2 = _check_hash("root2", root2)
    if size1 == 0 or size1 == size2:
        _check_sequence(proof, "consistency proof")
        if len(proof) != 0:
            reason = "size1 == 0" if size1 == 0 else "size1 == size2"
            raise VerificationError(
                f"consistency proof must be empty when {reason}, got {len(proof)} hashes"
            )
        if size1 == 0 and expected1 != EMPTY_ROOT:
            raise _mismatch("root1", EMPTY_ROOT, expected1)
        if size1 == size2 and expected1 != expected2:
            raise VerificationError(
                f"root1 {expected1.hex()} != root2 {expected2.hex()} for equal tree sizes {size1}"
            )
        return
    path = _check_proof(proof, len(consistency_proof_nodes(size1, size2)), "consistency proof")
    calculated1, calculated2 = _roots_from_consistency_proof(size1, size2, path, expected1)
    if calculated1 != expected1:
        raise _mismatch("root1", calculated1, expected1)
    if calculated2 != expected2:
        raise _mismatch("root2", calculated2, expected2)
