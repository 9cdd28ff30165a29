"""A witness following a log's key rotation (:mod:`otaudit.keyhistory`).

``otaudit key rotate --witness-dir DIR`` writes, next to the transition checkpoint
``checkpoint.<size>`` (signed by the old and the new key), ``rotation.<size>``: the rotation
record's canonical bytes and its RFC 9162 inclusion proof in that checkpoint, JSON
``{"index", "tree_size", "leaf_input_b64", "hashes"}``. A witness that trusts the old key
checks, before it cosigns: (1) the proof is for this checkpoint's size, (2) the record is in
the checkpoint's tree, (3) it is one of otaudit's own rotation records, (4) it is a valid
rotation of the key the witness trusts (both keys signed it, :func:`rotation_from_attributes`)
that hands over no earlier than the last size this witness accepted (the transition
checkpoint, which the old key signs too, may be that size), and (5) the checkpoint is
signed by the new key. The witness then trusts the new key only: a checkpoint the old key
signs afterwards is refused.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from otaudit import merkle
from otaudit.checkpoint import Checkpoint
from otaudit.conventions import OWN_PIPELINE
from otaudit.errors import VerificationError
from otaudit.keyhistory import ROTATE_ACTION, rotation_from_attributes
from otaudit.keys import VerifierKey
from otaudit.record import derive_columns, parse_sealed
from otaudit.witness.export import Refused


@dataclass(frozen=True)
class RotationProof:
    """The rotation record at ``index`` and its inclusion proof in the tree of ``tree_size``."""

    index: int
    tree_size: int
    leaf_input: bytes
    hashes: tuple[bytes, ...]

    @classmethod
    def parse(cls, data: bytes | str) -> RotationProof:
        """Parse ``rotation.<size>``; :class:`Refused` if malformed."""
        try:
            doc: Any = orjson.loads(data)
            index, size = doc["index"], doc["tree_size"]
            if not all(type(v) is int and v >= 0 for v in (index, size)):
                raise ValueError("index and tree_size must be non-negative integers")
            leaf = base64.b64decode(doc["leaf_input_b64"], validate=True)
            hashes = tuple(bytes.fromhex(h) for h in doc["hashes"])
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, binascii.Error) as exc:
            raise Refused(f"malformed key rotation proof: {exc}") from None
        return cls(index, size, leaf, hashes)


def follow(
    key: VerifierKey, origin: str, cp: Checkpoint, last_size: int, proof: RotationProof
) -> VerifierKey:
    """The key the rotation in ``proof`` hands over to (steps 1-4 of the module docstring);
    ``cp`` is the checkpoint's (not yet verified) body; Refused otherwise."""
    what = f"key rotation of log {origin!r} at size {cp.tree_size}"
    # 1. For this checkpoint.
    if proof.tree_size != cp.tree_size or not proof.index < cp.tree_size:
        raise Refused(f"{what}: the proof is for record {proof.index} in size {proof.tree_size}")
    # 2. In its tree.
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(proof.leaf_input), proof.index, cp.tree_size, list(proof.hashes),
            cp.root_hash,
        )  # fmt: skip
        envelope, _ = parse_sealed(proof.leaf_input)
        columns = derive_columns(envelope)
    except VerificationError as exc:
        raise Refused(f"{what}: the rotation record is not in the checkpoint: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"{what}: the rotation record is not a record: {exc}") from None
    # 3. One of otaudit's own rotation records.
    if columns.pipeline != OWN_PIPELINE or columns.action != ROTATE_ACTION:
        raise Refused(f"{what}: record {proof.index} is not a key rotation record")
    # 4. A rotation of the trusted key, after what this witness accepted.
    if proof.index + 1 < last_size:  # the transition checkpoint, index + 1, the old key signs
        raise Refused(
            f"{what}: the rotation at seq {proof.index} is older than size {last_size}, which "
            "this witness accepted under the old key"
        )
    try:
        return rotation_from_attributes(proof.index, columns.attributes, origin, key).new
    except VerificationError as exc:
        raise Refused(f"{what}: {exc}") from None
