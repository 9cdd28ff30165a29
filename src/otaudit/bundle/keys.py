"""A bundle's key history: ``keys.jsonl``, the rotation records under its checkpoint.

A bundle of a log whose key was rotated (:mod:`otaudit.keyhistory`) carries, besides
``verifier.key`` (the log's original key), one line per rotation record with
``seq < tree_size``: ``{"index", "tree_size", "leaf_hash", "hashes", "leaf_input_b64"}``, the
record's canonical bytes and their RFC 9162 inclusion proof in the bundle's checkpoint. The
verifier proves each record into the checkpoint's root, checks it as a rotation of the key in
force before it, and then checks the checkpoint (and ``manifest.sig``) with the key in force
at the checkpoint's size. A bundle that leaves a rotation out fails: its checkpoint is then
checked with a key that did not sign it. A log that never rotated writes no ``keys.jsonl``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from otaudit import merkle, tree
from otaudit.bundle.layout import KEYS, derive
from otaudit.conventions import OWN_PIPELINE
from otaudit.errors import VerificationError
from otaudit.keyhistory import ROTATE_ACTION, KeyHistory
from otaudit.keys import VerifierKey
from otaudit.store.base import Store

__all__ = ["KEYS", "key_history_lines", "read_key_history"]


def key_history_lines(store: Store, history: KeyHistory, size: int) -> bytes:
    """``keys.jsonl`` for a checkpoint of ``size``: every rotation record below it, proven
    into the tree of ``size`` (empty when there is none)."""
    lines = []
    for rotation in history.rotations:
        if rotation.seq >= size:
            break
        record = next(store.iter_records(rotation.seq, rotation.seq + 1))
        hashes = tree.stored_inclusion_proof(store, rotation.seq, size)
        doc = {
            "index": rotation.seq,
            "tree_size": size,
            "leaf_hash": merkle.leaf_hash(record.sealed).hex(),
            "hashes": [h.hex() for h in hashes],
            "leaf_input_b64": base64.b64encode(record.sealed).decode("ascii"),
        }
        lines.append(orjson.dumps(doc) + b"\n")
    return b"".join(lines)


def read_key_history(
    data: bytes, original: VerifierKey, origin: str, size: int, root: bytes
) -> KeyHistory:
    """The key history ``keys.jsonl`` (``data``) proves under the root of ``size`` leaves.

    Steps, for each line in order: (1) it parses; (2) its bytes' leaf hash is proven into
    ``root`` at ``size``; (3) the record is one of otaudit's own rotation records; (4) it is a
    valid rotation of the key in force (:meth:`KeyHistory.extend`). VerificationError names
    the line and seq.
    """
    history = KeyHistory(original)
    for n, line in enumerate(data.splitlines(), 1):
        where = f"{KEYS} line {n}"
        # 1. The line.
        try:
            doc: Any = orjson.loads(line)
            seq, sealed = doc["index"], base64.b64decode(doc["leaf_input_b64"], validate=True)
            hashes = [bytes.fromhex(h) for h in doc["hashes"]]
            if type(seq) is not int or doc["tree_size"] != size:
                raise ValueError(f"index must be an integer and tree_size {size}")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise VerificationError(f"{where} is not a proven record: {exc!r}") from exc
        # 2. In the signed tree.
        try:
            merkle.verify_inclusion(merkle.leaf_hash(sealed), seq, size, hashes, root)
        except VerificationError as exc:
            raise VerificationError(
                f"{where}: seq {seq} is not in the checkpoint: {exc}", seq
            ) from exc
        # 3. A rotation record of otaudit's own.
        columns, _ = derive(seq, sealed)
        if columns.pipeline != OWN_PIPELINE or columns.action != ROTATE_ACTION:
            raise VerificationError(f"{where}: seq {seq} is not a key rotation record", seq)
        # 4. A rotation of the key in force.
        history = history.extend(seq, columns.attributes, origin)
    return history
