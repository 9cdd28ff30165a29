"""Checking a bundle offline: ``otaudit verify-bundle``.

:func:`verify_bundle` needs neither the database nor the server. Its numbered steps check
the files against the manifest, the checkpoint's signature, every record's inclusion proof,
and that the readable copies (``records.jsonl``, ``records.csv``) say what the sealed
records say.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from otaudit import merkle
from otaudit.bundle.layout import (
    CANONICAL,
    CHECKPOINT,
    CSV,
    CSV_HEADER,
    FILES,
    FORMAT,
    JSONL,
    MANIFEST,
    PROOFS,
    VERIFIER_KEY,
    Report,
    Selection,
    csv_row,
    derive,
    jsonl_line,
)
from otaudit.canonical import canonical_bytes
from otaudit.checkpoint import Checkpoint, VerifierKey, open_checkpoint
from otaudit.errors import ConfigError, OtauditError, VerificationError
from otaudit.record import COLUMN_NAMES

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
    columns, envelope = derive(seq, data)
    if not selection.matches(columns):
        raise VerificationError(f"seq {seq}: not in the selection the manifest states", seq)
    want: dict[str, Any] = orjson.loads(jsonl_line(seq, columns, envelope))
    where = f"{JSONL} line for seq {seq}"
    try:
        got = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise VerificationError(f"{where}: {exc}", seq) from exc
    if not isinstance(got, dict) or set(got) != set(want):
        raise VerificationError(f"{where}: not the fields seq, {', '.join(COLUMN_NAMES)}, record")
    _compare(where, seq, list(want), list(want.values()), [got[k] for k in want])
    _compare(f"{CSV} row for seq {seq}", seq, CSV_HEADER, csv_row(seq, columns), row)


def _compare(where: str, seq: int, names: Any, want: list[Any], got: list[Any]) -> None:
    for name, w, g in zip_longest(names, want, got):
        if w != g:
            raise VerificationError(
                f"{where}: {name} is {g!r} but the sealed record says {w!r}", seq
            )
