"""A small signed ledger for the archive tests, and the removal the prune engine makes.

:func:`make_ledger` fills a data directory the CLI can open: a SQLite ledger of client
records (actor ``alice``) and records of otaudit's own by other actors (``user0`` ...,
targets ``doc-0`` ...), its signing key, and a checkpoint over all of them.
:func:`remove` takes rows out the way pruning does: a receipt on the ledger, the range
allowed under it, the rows deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from otaudit import datadir
from otaudit.access import Reader, log_request, seal_request
from otaudit.keys import SigningKey
from otaudit.store.sqlite import SQLiteStore
from sealing import entries, sign

ORIGIN = "archive.test/log"
CLIENT_RECORDS = 20
OWN_RECORDS = 10


@dataclass
class Ledger:
    """A data directory, its open store and signing key."""

    data: Path
    store: SQLiteStore
    key: SigningKey

    @property
    def size(self) -> int:
        """The ledger's tree size."""
        return self.store.tree_size()


def make_ledger(data: Path) -> Ledger:
    """A new signed ledger of ``CLIENT_RECORDS + OWN_RECORDS`` records in ``data``."""
    data.mkdir(mode=0o700)
    key = SigningKey.generate(ORIGIN)
    key.save(data / datadir.KEY_FILE)
    store = SQLiteStore(data / datadir.LEDGER_FILE)
    store.set_meta("origin", key.name)
    store.set_meta("verifier_key", key.verifier_key())
    store.append(entries(CLIENT_RECORDS))
    store.append(
        [
            seal_request(
                log_request(
                    Reader(f"user{i}"), "doc.read", "document", "read", {"audit.target": f"doc-{i}"}
                )
            )
            for i in range(OWN_RECORDS)
        ]
    )
    sign(store, key, ORIGIN)
    return Ledger(data, store, key)


def remove(store: SQLiteStore, first: int, last: int) -> int:
    """Remove the rows ``first..last`` under a new receipt record; the receipt's seq."""
    receipt = seal_request(log_request(Reader("t"), "otaudit.prune", "ledger", "receipt", {}))
    (receipt_seq,) = store.append([receipt]).seqs
    assert receipt_seq is not None
    store.add_removals(receipt_seq, [(first, last)])
    store.remove_payloads(first, last)
    return receipt_seq
