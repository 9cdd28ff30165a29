"""What a database writer without the signing key can build: a rewritten history.

The writer takes the records from some seq on, changes one of them (its sealed
bytes, and everything derived from them: columns, dedup key, leaf), and appends
them again through otaudit's own store code after deleting the originals, their
tree nodes and the checkpoints that commit to them. The result is a ledger that
is consistent with itself; only something the writer cannot change shows it.
"""

from __future__ import annotations

from otaudit.merkle import leaf_hash
from otaudit.record import Entry, dedup_key, derive_columns, parse_sealed
from otaudit.store.base import Store


def entry_of(sealed: bytes) -> Entry:
    """The entry a server would append for these sealed bytes."""
    envelope, content = parse_sealed(sealed)
    return Entry(sealed, leaf_hash(sealed), dedup_key(envelope["pipeline"], content),
                 derive_columns(envelope))  # fmt: skip


def forged_tail(store: Store, seq: int, old: bytes, new: bytes) -> list[Entry]:
    """Records ``seq`` onwards as entries, with ``old`` replaced by ``new`` in record ``seq``."""
    tail = [bytes(rec.sealed) for rec in store.iter_records(seq)]
    assert tail and tail[0].count(old) == 1, "the bytes to replace must occur once"
    tail[0] = tail[0].replace(old, new)
    return [entry_of(sealed) for sealed in tail]


# Deleting what commits to the old history: records and tree nodes from seq on, and every
# checkpoint above the size kept (both stores take these statements as written).
DELETE_FROM_SEQ = (
    "DELETE FROM records WHERE seq >= {seq}",
    "DELETE FROM tree_nodes WHERE ((idx + 1) << level) > {seq}",
    "DELETE FROM checkpoints WHERE tree_size > {keep}",
)
