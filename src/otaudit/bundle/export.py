"""Writing a bundle: ``otaudit export``.

The records of a :class:`~otaudit.bundle.layout.Selection` are read from the store in seq
order, each rechecked against its sealed bytes and proven against the latest signed
checkpoint, then streamed into the bundle's files while they are hashed for the manifest.
With the log's signing key, the manifest is signed too (``manifest.sig``), so that its
selection, record count and file hashes are the exporter's, checkable with the verifier key.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from otaudit import merkle, proofs, tree
from otaudit.bundle.keys import KEYS, key_history_lines
from otaudit.bundle.layout import (
    CANONICAL,
    CHECKPOINT,
    CSV,
    CSV_HEADER,
    FILES,
    FORMAT,
    JSONL,
    MANIFEST,
    MANIFEST_SIG,
    PROOFS,
    VERIFIER_KEY,
    Report,
    Selection,
    csv_row,
    derive,
    jsonl_line,
    manifest_note_text,
)
from otaudit.errors import ConfigError, VerificationError
from otaudit.keyhistory import KeyHistory, history_for
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import sign_note
from otaudit.outdir import OutputDir, open_output_dir
from otaudit.progress import Progress, counted
from otaudit.store.base import Store, StoredRecord

_FETCH: Final = 512


class _Sink:
    """A new file (mode 0600) in the output directory, written once, hashed as it is written."""

    def __init__(self, out: OutputDir, name: str) -> None:
        self.file = out.create(name)
        self.sha, self.size = hashlib.sha256(), 0

    def write(self, data: str | bytes) -> int:
        raw = data.encode() if isinstance(data, str) else data
        self.file.write(raw)
        self.sha.update(raw)
        self.size += len(raw)
        return len(data)

    def close(self) -> dict[str, Any]:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return {"sha256": self.sha.hexdigest(), "bytes": self.size}


def _fetch(store: Store, seqs: Iterator[int]) -> Iterator[StoredRecord]:
    """The stored records of ascending ``seqs``: one range read per dense chunk, else one each."""
    while chunk := [s for _, s in zip(range(_FETCH), seqs, strict=False)]:
        first, last = chunk[0], chunk[-1]
        if last - first < 4 * len(chunk):
            wanted = set(chunk)
            got = [r for r in store.iter_records(first, last + 1) if r.seq in wanted]
        else:
            got = [r for s in chunk for r in store.iter_records(s, s + 1)]
        if [r.seq for r in got] != chunk:
            missing = min(set(chunk) - {r.seq for r in got})
            raise VerificationError(f"seq {missing} is missing; run `otaudit verify`", missing)
        yield from got


class _Prover:
    """Inclusion proofs of ascending leaves in one signed tree, from stored nodes, checked.

    Nodes shared with the previous proof are reused rather than read again. Each proof is
    checked by folding it from the leaf up (RFC 9162 §2.1.3.2) until the root, or until an
    ancestor whose hash equals the one already proven for the previous leaf: from there on,
    both folds use the same ranges with the same hashes, so they reach the same root.
    """

    def __init__(self, store: Store, size: int, root: bytes) -> None:
        self.store, self.size, self.root = store, size, root
        self.path: dict[tuple[int, int], bytes] = {}  # the previous proof's nodes
        self.proven: dict[tuple[int, int], bytes] = {}  # the previous leaf's ancestors

    def prove(self, seq: int, leaf: bytes) -> list[bytes]:
        """The inclusion proof of leaf ``seq``; VerificationError if it does not reach the root."""
        nodes = merkle.inclusion_proof_nodes(seq, self.size)
        hashes = [self.path.get(n) or tree.stored_range_hash(self.store, *n) for n in nodes]
        self.path = dict(zip(nodes, hashes, strict=True))
        proven = {k: v for k, v in self.proven.items() if k[0] <= seq < k[1]}
        r, b, e = leaf, seq, seq + 1
        for (nb, ne), h in zip(nodes, hashes, strict=True):
            r, b, e = (merkle.node_hash(h, r), nb, e) if nb < b else (merkle.node_hash(r, h), b, ne)
            if proven.get((b, e)) == r:
                break
            proven[(b, e)] = r
        else:
            if r != self.root:
                raise VerificationError(
                    f"seq {seq}: not included in the checkpoint at tree size {self.size} "
                    f"(calculated root {r.hex()}); run `otaudit verify`",
                    seq,
                )
        self.proven = proven
        return hashes


def export_bundle(
    store: Store, key: VerifierKey, out: Path, selection: Selection,
    signer: SigningKey | None = None, *, progress: Progress | None = None,
) -> Report:  # fmt: skip
    """Write the bundle of ``selection`` to ``out``, against the latest signed checkpoint.
    Every record is rechecked and proven before it is written. With ``signer`` (the log's
    signing key, whose verifier ``key`` is) the manifest is signed.

    ``out`` is created with mode 0700 and its files 0600; an existing ``out`` must be an empty
    directory of this user that no one else may write to, reached through no symbolic link
    (:func:`otaudit.outdir.open_output_dir`: UnsafeOutputError otherwise, nothing written).

    ``progress`` (optional) is called with the number of records written so far, ending at
    the number in the bundle."""
    started = time.perf_counter()
    history = history_for(store, key)
    if signer is not None and signer.verifier() != history.current:
        raise ConfigError(
            f"signing key {signer.name}+{signer.key_id.hex()} is not the log's key "
            f"{history.current}"
        )
    directory = open_output_dir(out)
    try:
        return _write(store, history, directory, selection, signer, started, progress)
    except BaseException:
        directory.discard()
        raise
    finally:
        directory.close()


def _write(
    store: Store, history: KeyHistory, out: OutputDir, selection: Selection,
    signer: SigningKey | None, started: float, progress: Progress | None,
) -> Report:  # fmt: skip
    stored = proofs.checkpoint_at(store, None)
    cp = history.open_checkpoint(stored.note, store.meta("origin"))
    key = history.original
    size, root = cp.tree_size, cp.root_hash
    if (size, root) != (stored.tree_size, stored.root_hash):
        raise VerificationError(f"checkpoint at tree size {size}: stored size or root differs")
    ledger_size = store.tree_size()
    left_out = 0

    def below_checkpoint() -> Iterator[int]:
        nonlocal left_out
        seqs = selection.seqs() if selection.seq_ranges else store.select_seqs(
            since_ns=selection.since_ns, until_ns=selection.until_ns,
            actions=selection.actions, end=ledger_size)  # fmt: skip
        for seq in seqs:
            if seq < size:
                yield seq
            else:
                left_out += 1

    sinks: dict[str, _Sink] = {}
    try:
        sinks.update((name, _Sink(out, name)) for name in FILES)
        table = csv.writer(sinks[CSV])
        table.writerow(CSV_HEADER)
        count = total = 0
        prover = _Prover(store, size, root)
        for rec in counted(_fetch(store, below_checkpoint()), progress):
            leaf = merkle.leaf_hash(rec.sealed)
            hashes = prover.prove(rec.seq, leaf)
            columns, envelope = derive(rec.seq, rec.sealed)
            if selection.everything and rec.seq != count:
                raise VerificationError(f"seq {count} is missing; run `otaudit verify`", count)
            if columns != rec.columns:
                raise VerificationError(
                    f"seq {rec.seq}: stored columns differ from the sealed record; "
                    "run `otaudit verify`",
                    rec.seq,
                )
            if selection.seq_ranges and not selection.matches(columns):
                continue  # selected by seq: time and action are checked on the record
            sinks[CANONICAL].write(rec.sealed + b"\n")
            sinks[JSONL].write(jsonl_line(rec.seq, columns, envelope))
            table.writerow(csv_row(rec.seq, columns))
            sinks[PROOFS].write(orjson.dumps({"index": rec.seq, "tree_size": size,
                "leaf_hash": leaf.hex(), "hashes": [h.hex() for h in hashes]}) + b"\n")  # fmt: skip
            count, total = count + 1, total + len(rec.sealed)
        sinks[CHECKPOINT].write(stored.note.encode())
        sinks[VERIFIER_KEY].write(f"{key}\n")
        if selection.everything and count != size:
            raise VerificationError(f"seq {count} is missing; run `otaudit verify`", count)
        rotations = key_history_lines(store, history, size)
        if rotations:  # keys.jsonl: only a log whose key was rotated
            sinks[KEYS] = _Sink(out, KEYS)
            sinks[KEYS].write(rotations)
        files = {name: sink.close() for name, sink in sinks.items()}
        manifest = {"format": FORMAT, "origin": cp.origin, "tree_size": size,
                    "root_hash": root.hex(), "records": count, "selection": selection.manifest(),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "files": files}  # fmt: skip
        manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
        sinks[MANIFEST] = _Sink(out, MANIFEST)
        sinks[MANIFEST].write(manifest_bytes)
        sinks[MANIFEST].close()
        if signer is not None:
            sinks[MANIFEST_SIG] = _Sink(out, MANIFEST_SIG)
            sinks[MANIFEST_SIG].write(sign_note(manifest_note_text(manifest_bytes), signer))
            sinks[MANIFEST_SIG].close()
        out.sync()
    finally:
        for sink in sinks.values():
            sink.file.close()
    return Report(count, total, size, time.perf_counter() - started, left_out, key,
                  manifest_signed=signer is not None, complete=selection.everything,
                  selection=selection)  # fmt: skip
