"""Offline evidence bundles: selected records, each proven against one signed checkpoint.

``otaudit export`` writes a directory an auditor can check with neither the
database nor the server (``otaudit verify-bundle``, or the short standalone
script in ``docs/verifying.md``)::

    records.canonical  each record's sealed bytes (the Merkle leaf input) and "\\n", by seq
    records.jsonl      {"seq", every derived column, "record": the parsed envelope} per line
    records.csv        seq and the derived columns, with a header row
    proofs.jsonl       {"index", "tree_size", "leaf_hash", "hashes"} per record (RFC 9162)
    checkpoint         the signed note (C2SP tlog-checkpoint) exactly as stored
    verifier.key       the log's verifier key and "\\n"
    manifest.json      format, origin, tree size, root, record count, selection, created_at,
                       and the SHA-256 and size of every other file

Both directions stream: memory does not grow with the number of records. Only
the checkpoint is signed; the manifest is not, so a filtered bundle proves that
each record it holds is authentic, not that no matching record was left out
(an unfiltered bundle must hold every record ``0 .. tree_size - 1``).
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

from otaudit import merkle, proofs, tree
from otaudit.canonical import canonical_bytes
from otaudit.checkpoint import Checkpoint, VerifierKey, open_checkpoint
from otaudit.errors import ConfigError, OtauditError, VerificationError
from otaudit.record import COLUMN_NAMES, Columns, derive_columns, parse_sealed, rfc3339_ns
from otaudit.store.base import Store, StoredRecord

FORMAT: Final = "otaudit-bundle/1"
CANONICAL, JSONL, CSV = "records.canonical", "records.jsonl", "records.csv"
PROOFS, CHECKPOINT, VERIFIER_KEY = "proofs.jsonl", "checkpoint", "verifier.key"
MANIFEST: Final = "manifest.json"
FILES: Final = (CANONICAL, JSONL, CSV, PROOFS, CHECKPOINT, VERIFIER_KEY)
CSV_HEADER: Final = ("seq", *COLUMN_NAMES)
_FETCH: Final = 512
_BOUNDS: Final = ("since_utc", "until_utc")


@dataclass(frozen=True)
class Selection:
    """Which records to export: ``since_ns <= time_unix_nano < until_ns`` and ``action``."""

    since_ns: int | None = None
    until_ns: int | None = None
    actions: tuple[str, ...] = ()
    given: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """The selection as the manifest records it: as given, plus the resolved UTC bounds."""
        utc = [None if ns is None else rfc3339_ns(ns) for ns in (self.since_ns, self.until_ns)]
        given = {k: self.given.get(k) for k in ("since", "until")}
        return {**given, "actions": list(self.actions), "since_utc": utc[0], "until_utc": utc[1]}

    @classmethod
    def from_manifest(cls, sel: dict[str, Any]) -> Selection:
        """The selection a manifest states (its resolved ``*_utc`` bounds and actions)."""
        try:
            since, until = (None if sel[k] is None else _utc_ns(sel[k]) for k in _BOUNDS)
            return cls(since, until, tuple(str(a) for a in sel["actions"]), sel)
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{MANIFEST}: selection is malformed: {exc!r}") from exc

    @property
    def everything(self) -> bool:
        """Whether every record is selected."""
        return self.since_ns is None and self.until_ns is None and not self.actions

    def matches(self, columns: Columns) -> bool:
        """Whether a record with these columns is selected."""
        t = columns.time_unix_nano
        return ((self.since_ns is None or t >= self.since_ns)
                and (self.until_ns is None or t < self.until_ns)
                and (not self.actions or columns.action in self.actions))  # fmt: skip


@dataclass(frozen=True)
class Report:
    """What an export wrote, or what a bundle verification checked."""

    records: int
    record_bytes: int
    tree_size: int
    seconds: float
    left_out: int = 0
    key: VerifierKey | None = None

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else float("inf")


class _Sink:
    """A new file written once, hashed as it is written."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("xb")
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
        hashes = [self.path.get(n) or tree.range_hash(self.store, *n) for n in nodes]
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


def export_bundle(store: Store, key: VerifierKey, out: Path, selection: Selection) -> Report:
    """Write the bundle of ``selection`` to ``out`` (absent or empty), against the latest
    signed checkpoint. Every record is rechecked and proven before it is written."""
    started = time.perf_counter()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} must not exist or be an empty directory")
    stored = proofs.checkpoint_at(store, None)
    cp = open_checkpoint(stored.note, key, store.meta("origin"))
    size, root = cp.tree_size, cp.root_hash
    if (size, root) != (stored.tree_size, stored.root_hash):
        raise VerificationError(f"checkpoint at tree size {size}: stored size or root differs")
    ledger_size = store.tree_size()
    left_out = 0

    def below_checkpoint() -> Iterator[int]:
        nonlocal left_out
        for seq in store.select_seqs(since_ns=selection.since_ns, until_ns=selection.until_ns,
                                     actions=selection.actions, end=ledger_size):  # fmt: skip
            if seq < size:
                yield seq
            else:
                left_out += 1

    created = not out.exists()
    sinks: dict[str, _Sink] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        sinks.update((name, _Sink(out / name)) for name in FILES)
        table = csv.writer(sinks[CSV])
        table.writerow(CSV_HEADER)
        count = total = 0
        prover = _Prover(store, size, root)
        for rec in _fetch(store, below_checkpoint()):
            leaf = merkle.leaf_hash(rec.sealed)
            hashes = prover.prove(rec.seq, leaf)
            columns, envelope = _derive(rec.seq, rec.sealed)
            if selection.everything and rec.seq != count:
                raise VerificationError(f"seq {count} is missing; run `otaudit verify`", count)
            if columns != rec.columns:
                raise VerificationError(
                    f"seq {rec.seq}: stored columns differ from the sealed record; "
                    "run `otaudit verify`",
                    rec.seq,
                )
            sinks[CANONICAL].write(rec.sealed + b"\n")
            sinks[JSONL].write(_jsonl(rec.seq, columns, envelope))
            table.writerow(_csv_row(rec.seq, columns))
            sinks[PROOFS].write(orjson.dumps({"index": rec.seq, "tree_size": size,
                "leaf_hash": leaf.hex(), "hashes": [h.hex() for h in hashes]}) + b"\n")  # fmt: skip
            count, total = count + 1, total + len(rec.sealed)
        sinks[CHECKPOINT].write(stored.note.encode())
        sinks[VERIFIER_KEY].write(f"{key}\n")
        if selection.everything and count != size:
            raise VerificationError(f"seq {count} is missing; run `otaudit verify`", count)
        files = {name: sink.close() for name, sink in sinks.items()}
        manifest = {"format": FORMAT, "origin": cp.origin, "tree_size": size,
                    "root_hash": root.hex(), "records": count, "selection": selection.manifest(),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "files": files}  # fmt: skip
        manifest_sink = _Sink(out / MANIFEST)
        manifest_sink.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
        manifest_sink.close()
    except BaseException:
        for sink in sinks.values():
            sink.file.close()
        for name in (*FILES, MANIFEST):
            (out / name).unlink(missing_ok=True)
        if created and out.is_dir():
            out.rmdir()
        raise
    return Report(count, total, size, time.perf_counter() - started, left_out, key)


def _utc_ns(text: str) -> int:
    """UTC nanoseconds of ``rfc3339_ns`` text (``2026-01-01T00:00:00.000000000Z``)."""
    if len(text) != 30 or text[19] != "." or text[-1] != "Z":
        raise ValueError(f"{text!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ")
    seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int(text[20:29])


def _derive(seq: int, sealed: bytes) -> tuple[Columns, dict[str, Any]]:
    try:
        envelope, _ = parse_sealed(sealed)
        return derive_columns(envelope), envelope
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(f"seq {seq}: not a valid sealed record: {exc}", seq) from exc


def _jsonl(seq: int, columns: Columns, envelope: dict[str, Any]) -> bytes:
    return orjson.dumps({"seq": seq, **columns._asdict(), "record": envelope}) + b"\n"


def _csv_row(seq: int, columns: Columns) -> list[str]:
    return [str(seq), *("" if v is None else str(v) for v in columns)]


# --------------------------------------------------------------------------------------------
# Verification


def _open(directory: Path, name: str) -> BinaryIO:
    try:
        return (directory / name).open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {directory / name}: {exc.strerror or exc}") from exc


def _manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    if not (directory / MANIFEST).is_file():
        raise ConfigError(f"{directory} is not an otaudit bundle: it has no {MANIFEST}")
    with _open(directory, MANIFEST) as f:
        try:
            m = orjson.loads(f.read())
        except orjson.JSONDecodeError as exc:
            raise VerificationError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise VerificationError(f"{MANIFEST}: format is not {FORMAT!r}")
    shape = {"origin": str, "tree_size": int, "root_hash": str, "records": int,
             "selection": dict, "files": dict}  # fmt: skip
    for key, kind in shape.items():
        if not isinstance(m.get(key), kind) or isinstance(m.get(key), bool):
            raise VerificationError(f"{MANIFEST}: {key} is missing or not a {kind.__name__}")
    return m


def verify_bundle(directory: Path, key: VerifierKey | None = None) -> Report:
    """Check a bundle offline; return a report, or raise VerificationError naming what is wrong.

    Without ``key`` the bundle's own ``verifier.key`` is used: that proves only that the
    bundle is consistent, not who signed it (``Report.key`` says which key was used).
    """
    started = time.perf_counter()

    # (1) Integrity of the files. The manifest parses, lists exactly the bundle's files, and
    # each file has the listed SHA-256 and size; no file in the directory is left unlisted.
    # This catches accidental damage; deliberate edits are caught by the checks below, since
    # the manifest itself is not signed.
    m = _manifest(directory)
    listed, present = set(m["files"]), {p.name for p in directory.iterdir()} - {MANIFEST}
    if extra := sorted(present - set(FILES)):
        raise VerificationError(f"extra file {extra[0]} in the bundle is not in the manifest")
    for name in FILES:
        if name not in listed or name not in present:
            where = "in the manifest" if name not in listed else "in the bundle"
            raise VerificationError(f"{name} is missing {where}")
        digest, size = hashlib.sha256(), 0
        with _open(directory, name) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        if m["files"][name] != {"sha256": digest.hexdigest(), "bytes": size}:
            raise VerificationError(f"{name}: SHA-256 or size differs from the manifest")
    if unknown := sorted(listed - set(FILES)):
        raise VerificationError(f"the manifest lists {unknown[0]}, which is not a bundle file")

    # (2) The signed checkpoint. It verifies with the trusted key (--key), else with the
    # bundle's own verifier.key; its origin, size and root are those the manifest states.
    with _open(directory, VERIFIER_KEY) as f, _open(directory, CHECKPOINT) as g:
        key_text, note = f.read().decode(errors="replace").removesuffix("\n"), g.read()
    try:
        bundle_key = VerifierKey.parse(key_text)
        cp = open_checkpoint(note, key or bundle_key)
    except OtauditError as exc:
        where = CHECKPOINT if isinstance(exc, VerificationError) else VERIFIER_KEY
        raise VerificationError(f"{where}: {exc}") from exc
    if key is not None and key != bundle_key:
        raise VerificationError(f"{VERIFIER_KEY} holds {bundle_key}, not the key given")
    if [m["origin"], m["tree_size"], m["root_hash"]] != [cp.origin, cp.tree_size,
                                                          cp.root_hash.hex()]:  # fmt: skip
        raise VerificationError(
            f"{MANIFEST}: origin, tree size or root differs from the checkpoint"
        )

    # (3) Every record is in the signed tree. For line i of records.canonical and proofs.jsonl:
    # SHA-256(0x00 || bytes) is the proof's leaf_hash, the RFC 9162 inclusion proof leads to
    # the checkpoint's root, indexes strictly increase (and, for a bundle of every record,
    # are exactly 0 .. tree_size - 1), and the bytes are canonical (RFC 8785).
    selection = Selection.from_manifest(m["selection"])
    count, total = _check_proofs(directory, cp, selection.everything)
    if count != m["records"]:
        raise VerificationError(f"{MANIFEST} says {m['records']} records, the bundle has {count}")

    # (4) The readable copies say what the sealed records say. Columns are re-derived from
    # each record; each line of records.jsonl and row of records.csv must equal them, and
    # each record must match the selection the manifest states.
    _check_copies(directory, selection)
    return Report(count, total, cp.tree_size, time.perf_counter() - started, 0, key or bundle_key)


def _lines(directory: Path, name: str) -> Iterator[bytes]:
    with _open(directory, name) as f:
        for n, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                raise VerificationError(f"{name} line {n} does not end with a newline")
            yield line[:-1]


def _check_proofs(directory: Path, cp: Checkpoint, every: bool) -> tuple[int, int]:
    previous, total, n = -1, 0, 0
    pairs = zip_longest(_lines(directory, CANONICAL), _lines(directory, PROOFS))
    for n, (data, line) in enumerate(pairs, 1):
        if data is None or line is None:
            raise VerificationError(f"{CANONICAL} and {PROOFS} have different numbers of lines")
        try:
            p = orjson.loads(line)
            seq, size, leaf = p["index"], p["tree_size"], bytes.fromhex(p["leaf_hash"])
            hashes = [bytes.fromhex(h) for h in p["hashes"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{PROOFS} line {n} is not a proof: {exc!r}") from exc
        where = f"seq {seq} ({CANONICAL} line {n})"
        if size != cp.tree_size:
            raise VerificationError(f"{where}: proof is for tree size {size}", seq)
        if merkle.leaf_hash(data) != leaf:
            raise VerificationError(f"{where}: record bytes do not match the leaf hash", seq)
        try:
            merkle.verify_inclusion(leaf, seq, cp.tree_size, hashes, cp.root_hash)
        except VerificationError as exc:
            raise VerificationError(f"{where}: not included in the checkpoint: {exc}", seq) from exc
        if seq <= previous:
            raise VerificationError(f"{where}: index does not follow seq {previous}", seq)
        if every and seq != n - 1:
            raise VerificationError(f"seq {n - 1} is missing from a bundle of every record", n - 1)
        try:
            canonical = canonical_bytes(orjson.loads(data)) == data
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise VerificationError(f"{where}: record is not JSON: {exc}", seq) from exc
        if not canonical:
            raise VerificationError(f"{where}: record is not canonical JSON (RFC 8785)", seq)
        previous, total = seq, total + len(data)
    if every and n != cp.tree_size:
        raise VerificationError(f"seq {n} onwards is missing from a bundle of every record", n)
    return n, total


def _check_copies(directory: Path, selection: Selection) -> None:
    with _open(directory, CSV) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        rows = csv.reader(text, strict=True)
        lines = zip_longest(_lines(directory, CANONICAL), _lines(directory, PROOFS),
                            _lines(directory, JSONL), rows)  # fmt: skip
        try:
            if next(rows, None) != list(CSV_HEADER):
                raise VerificationError(f"{CSV}: the header row is not {','.join(CSV_HEADER)}")
            for data, proof, line, row in lines:
                if line is None or row is None or data is None or proof is None:
                    raise VerificationError(f"{JSONL} or {CSV} has a different number of records")
                seq = orjson.loads(proof)["index"]
                _check_copy(seq, data, line, row, selection)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise VerificationError(f"{CSV} is not UTF-8 CSV: {exc}") from exc


def _check_copy(seq: int, data: bytes, line: bytes, row: list[str], selection: Selection) -> None:
    columns, envelope = _derive(seq, data)
    if not selection.matches(columns):
        raise VerificationError(f"seq {seq}: not in the selection the manifest states", seq)
    want: dict[str, Any] = orjson.loads(_jsonl(seq, columns, envelope))
    where = f"{JSONL} line for seq {seq}"
    try:
        got = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise VerificationError(f"{where}: {exc}", seq) from exc
    if not isinstance(got, dict) or set(got) != set(want):
        raise VerificationError(f"{where}: not the fields seq, {', '.join(COLUMN_NAMES)}, record")
    _compare(where, seq, list(want), list(want.values()), [got[k] for k in want])
    _compare(f"{CSV} row for seq {seq}", seq, CSV_HEADER, _csv_row(seq, columns), row)


def _compare(where: str, seq: int, names: Any, want: list[Any], got: list[Any]) -> None:
    for name, w, g in zip_longest(names, want, got):
        if w != g:
            raise VerificationError(
                f"{where}: {name} is {g!r} but the sealed record says {w!r}", seq
            )
