"""Checking a bundle offline: ``otaudit verify-bundle``.

:func:`verify_bundle` needs neither the database nor the server. Its numbered steps read only
regular files, check the checkpoint's and the manifest's signatures, the files against the
manifest, every record's inclusion proof, and that the readable copies (``records.jsonl``,
``records.csv``) say what the sealed records say. Its :class:`Report` says what that proved:
every record is in the log under the signed checkpoint; with ``manifest.sig``, the selection
is the one the exporter signed; with a bundle of every record, none is missing.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import stat
import time
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

from otaudit import merkle
from otaudit.bundle.keys import KEYS, read_key_history
from otaudit.bundle.layout import (
    CANONICAL,
    CHECKPOINT,
    CSV,
    CSV_HEADER,
    FILES,
    JSONL,
    MANIFEST,
    MANIFEST_SIG,
    MAX_BYTES,
    PROOFS,
    READ_FORMATS,
    VERIFIER_KEY,
    Report,
    Selection,
    csv_row,
    derive,
    jsonl_line,
    manifest_note_text,
)
from otaudit.canonical import canonical_bytes
from otaudit.checkpoint import Checkpoint
from otaudit.errors import ConfigError, OtauditError, VerificationError
from otaudit.keyhistory import KeyHistory
from otaudit.keys import VerifierKey
from otaudit.note import open_note
from otaudit.progress import Progress, counted
from otaudit.record import COLUMN_NAMES

_MAX_CSV_FIELD: Final = 2**31 - 1
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_KINDS: Final = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                 (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a device"),
                 (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip

# --------------------------------------------------------------------------------------------
# Reading the files


class _Files:
    """The files of one bundle directory, read only if they are regular files.

    Anything else is refused before it is read, naming the file: a symbolic link (to
    ``/dev/zero``, or out of the bundle), a FIFO (reading it waits forever), a device, a
    directory. Files are opened without following links and without blocking, and checked
    again on the open file. Each file is read several times; every open checks that it is the
    same file, unchanged (device, inode, size, modification time), as the first time.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: dict[str, tuple[int, int, int, int]] = {}

    def open(self, name: str) -> BinaryIO:
        """The file ``name``, open for reading; VerificationError if it is missing, not a
        regular file, larger than :data:`MAX_BYTES` allows, or changed since last opened."""
        path = self.directory / name
        try:
            _check_regular(name, os.lstat(path).st_mode)
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            raise VerificationError(f"{name} is missing in the bundle") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # replaced by a link after the lstat
                raise VerificationError(f"{name} is a symbolic link, not a regular file") from None
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            _check_regular(name, st.st_mode)
            limit = MAX_BYTES.get(name)
            if limit is not None and st.st_size > limit:
                raise VerificationError(f"{name} is {st.st_size} bytes, more than {limit}")
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if self.seen.setdefault(name, identity) != identity:
                raise VerificationError(f"{name} changed while the bundle was being verified")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def read(self, name: str) -> bytes:
        """The whole of a small file (one with a limit in :data:`MAX_BYTES`)."""
        with self.open(name) as f:
            return f.read(MAX_BYTES[name] + 1)

    def exists(self, name: str) -> bool:
        """Whether the bundle has an entry ``name`` (of any kind)."""
        return os.path.lexists(self.directory / name)


def _check_regular(name: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
        raise VerificationError(f"{name} is {kind}; a bundle holds only regular files")


def _manifest(files: _Files) -> tuple[dict[str, Any], bytes]:
    if not files.directory.is_dir():
        raise ConfigError(f"{files.directory} is not a directory")
    if not files.exists(MANIFEST):
        raise ConfigError(f"{files.directory} is not an otaudit bundle: it has no {MANIFEST}")
    raw = files.read(MANIFEST)
    try:
        m = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise VerificationError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") not in READ_FORMATS:
        raise VerificationError(f"{MANIFEST}: format is not one of {', '.join(READ_FORMATS)}")
    shape = {"origin": str, "tree_size": int, "root_hash": str, "records": int,
             "selection": dict, "files": dict}  # fmt: skip
    for key, kind in shape.items():
        if not isinstance(m.get(key), kind) or isinstance(m.get(key), bool):
            raise VerificationError(f"{MANIFEST}: {key} is missing or not a {kind.__name__}")
    return m, raw


# --------------------------------------------------------------------------------------------
# Verification


def stated_records(directory: Path) -> int | None:
    """The record count the manifest of the bundle in ``directory`` states, unchecked, to size
    a progress bar with; None when the manifest cannot be read (verification says why)."""
    try:
        return int(_manifest(_Files(directory))[0]["records"])
    except OtauditError:
        return None


def verify_bundle(
    directory: Path,
    key: VerifierKey | None = None,
    *,
    require_signed_manifest: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Check a bundle offline; return a report, or raise VerificationError naming what is wrong
    (ConfigError when the directory is not a bundle or cannot be read).

    Without ``key`` the bundle's own ``verifier.key`` is used: that proves only that the
    bundle is consistent, not who signed it (``Report.key`` says which key was used). A
    bundle without ``manifest.sig`` (exported without the signing key, or before manifests
    were signed) still has every record checked; ``Report.manifest_signed`` is then False,
    or, with ``require_signed_manifest``, it fails.

    ``progress`` (optional) is called with the record checks done so far: each record is
    checked twice (its proof in step 4, its readable copies in step 5), so the count ends at
    twice the number of records.
    """
    started = time.perf_counter()
    files = _Files(directory)

    # (1) The files. The manifest parses; the directory holds only bundle files, each a
    # regular file (a link to /dev/zero or a FIFO would never end), small ones bounded.
    m, manifest_bytes = _manifest(files)
    present = {p.name for p in directory.iterdir()} - {MANIFEST, MANIFEST_SIG}
    if extra := sorted(present - set(FILES) - {KEYS}):
        raise VerificationError(f"extra file {extra[0]} in the bundle is not in the manifest")

    # (2) The signatures. The checkpoint verifies with the trusted key (--key), else with the
    # bundle's own verifier.key, and states the manifest's origin, size and root. The
    # manifest.sig note, if any, verifies with the same key and names the SHA-256 of
    # manifest.json's exact bytes: the selection, record count and file hashes are then the
    # exporter's, who held the log's signing key.
    # A log whose key was rotated also has keys.jsonl: its rotation records, proven into
    # the checkpoint, give the key in force at the checkpoint's size (bundle.keys), and the
    # trusted key must be one of that history's keys.
    key_text = files.read(VERIFIER_KEY).decode(errors="replace").removesuffix("\n")
    try:
        bundle_key = VerifierKey.parse(key_text)
        history = _key_history(files, bundle_key, m)
        if not history.rotations and key is not None:
            history = KeyHistory(key)  # the given key signs, or the bundle fails
        cp = history.open_checkpoint(files.read(CHECKPOINT))
    except OtauditError as exc:
        where = CHECKPOINT if isinstance(exc, VerificationError) else VERIFIER_KEY
        raise VerificationError(f"{where}: {exc}") from exc
    if key is not None and key != bundle_key and key not in history.keys:
        raise VerificationError(f"{VERIFIER_KEY} holds {bundle_key}, not the key given")
    if [m["origin"], m["tree_size"], m["root_hash"]] != [cp.origin, cp.tree_size,
                                                          cp.root_hash.hex()]:  # fmt: skip
        raise VerificationError(
            f"{MANIFEST}: origin, tree size or root differs from the checkpoint"
        )
    signed = files.exists(MANIFEST_SIG)
    if signed:
        _check_manifest_signature(files, manifest_bytes, history.key_for(cp.tree_size))
    elif require_signed_manifest:
        raise VerificationError(
            f"{MANIFEST_SIG} is missing: the selection and completeness are not signed"
        )

    # (3) Integrity of the files. The manifest lists exactly the bundle's files, and each has
    # the listed SHA-256 and size. Unsigned, the manifest only catches accidental damage;
    # deliberate edits are caught by the checks below.
    _check_hashes(files, m["files"], present)

    # (4) Every record is in the signed tree. For line i of records.canonical and proofs.jsonl:
    # SHA-256(0x00 || bytes) is the proof's leaf_hash, the RFC 9162 inclusion proof leads to
    # the checkpoint's root, indexes strictly increase (and, for a bundle of every record,
    # are exactly 0 .. tree_size - 1), and the bytes are canonical (RFC 8785).
    selection = Selection.from_manifest(m["selection"])
    count, total = _check_proofs(files, cp, selection.everything, progress)
    if count != m["records"]:
        raise VerificationError(f"{MANIFEST} says {m['records']} records, the bundle has {count}")
    # A selection of explicit seqs alone (an archive segment) must hold every one of them:
    # with step 5's check that each record is one of them, the bundle holds exactly those.
    selected = sum(last - first + 1 for first, last in selection.seq_ranges)
    if selection.seq_ranges and selection.only_seqs and count != selected:
        raise VerificationError(
            f"{MANIFEST} selects {selected} records by seq, the bundle has {count}",
            expected=selected,
            computed=count,
        )

    # (5) The readable copies say what the sealed records say. Columns are re-derived from
    # each record; each line of records.jsonl and row of records.csv must equal them, and
    # each record must match the selection the manifest states (its seqs too).
    _check_copies(files, selection, m["format"], progress, count)
    return Report(count, total, cp.tree_size, time.perf_counter() - started, 0,
                  key or history.key_for(cp.tree_size),
                  manifest_signed=signed, complete=selection.everything,
                  selection=selection)  # fmt: skip


def _check_manifest_signature(files: _Files, manifest: bytes, key: VerifierKey) -> None:
    try:
        text = open_note(files.read(MANIFEST_SIG), key)
    except VerificationError as exc:
        raise VerificationError(f"{MANIFEST_SIG}: {exc}") from exc
    if text != (want := manifest_note_text(manifest)):
        raise VerificationError(
            f"{MANIFEST_SIG} signs another manifest: it signs {text[:120]!r}, this "
            f"{MANIFEST} gives {want!r}"
        )


def _check_hashes(files: _Files, listed: dict[str, Any], present: set[str]) -> None:
    optional = [KEYS] if KEYS in listed or KEYS in present else []  # a rotated log's only
    for name in (*FILES, *optional):
        if name not in listed or name not in present:
            where = "in the manifest" if name not in listed else "in the bundle"
            raise VerificationError(f"{name} is missing {where}")
        want = listed[name]
        digest, size = hashlib.sha256(), 0
        with files.open(name) as f:
            stated = want.get("bytes") if isinstance(want, dict) else None
            if stated == os.fstat(f.fileno()).st_size:  # else it differs: no need to read it
                while size <= stated and (chunk := f.read(1 << 20)):
                    digest.update(chunk)
                    size += len(chunk)
        if want != {"sha256": digest.hexdigest(), "bytes": size}:
            raise VerificationError(f"{name}: SHA-256 or size differs from the manifest")
    if unknown := sorted(set(listed) - set(FILES) - {KEYS}):
        raise VerificationError(f"the manifest lists {unknown[0]}, which is not a bundle file")


def _key_history(files: _Files, original: VerifierKey, m: dict[str, Any]) -> KeyHistory:
    """The key history of the bundle: ``original`` and the rotations ``keys.jsonl`` proves
    under the root the manifest states (the checkpoint is then checked to sign that root)."""
    if not files.exists(KEYS):
        return KeyHistory(original)
    try:
        root = bytes.fromhex(m["root_hash"])
        size, origin = int(m["tree_size"]), str(m["origin"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"{MANIFEST}: origin, tree size or root is malformed") from exc
    return read_key_history(files.read(KEYS), original, origin, size, root)


def _lines(files: _Files, name: str) -> Iterator[bytes]:
    with files.open(name) as f:
        for n, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                raise VerificationError(f"{name} line {n} does not end with a newline")
            yield line[:-1]


def _check_proofs(
    files: _Files, cp: Checkpoint, every: bool, progress: Progress | None
) -> tuple[int, int]:
    previous, total, n = -1, 0, 0
    pairs = counted(zip_longest(_lines(files, CANONICAL), _lines(files, PROOFS)), progress)
    for n, (data, line) in enumerate(pairs, 1):
        if data is None or line is None:
            raise VerificationError(f"{CANONICAL} and {PROOFS} have different numbers of lines")
        try:
            p = orjson.loads(line)
            seq, size, leaf = p["index"], p["tree_size"], bytes.fromhex(p["leaf_hash"])
            hashes = [bytes.fromhex(h) for h in p["hashes"]]
            if not all(type(v) is int for v in (seq, size)) or not isinstance(p["hashes"], list):
                raise TypeError("index and tree_size must be integers, hashes a list")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{PROOFS} line {n} is not a proof: {exc!r}") from exc
        where = f"seq {seq} ({CANONICAL} line {n})"
        if size != cp.tree_size:
            raise VerificationError(f"{where}: proof is for tree size {size}", seq,
                                    expected=cp.tree_size, computed=size)  # fmt: skip
        computed = merkle.leaf_hash(data)
        if computed != leaf:
            raise VerificationError(f"{where}: record bytes do not match the leaf hash", seq,
                                    expected=leaf, computed=computed)  # fmt: skip
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


def _check_copies(
    files: _Files, selection: Selection, fmt: str, progress: Progress | None, done: int
) -> None:
    # A record's attributes column can be megabytes (256 attributes of up to 64 KiB each by
    # default); the csv module's default limit of 128 KiB per field would fail such a bundle.
    # The file's own size, checked against the manifest, is the bound.
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_CSV_FIELD))
    with files.open(CSV) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        rows = csv.reader(text, strict=True)
        lines = zip_longest(_lines(files, CANONICAL), _lines(files, PROOFS),
                            _lines(files, JSONL), rows)  # fmt: skip
        try:
            if next(rows, None) != list(CSV_HEADER):
                raise VerificationError(f"{CSV}: the header row is not {','.join(CSV_HEADER)}")
            for data, proof, line, row in counted(lines, progress, done):
                if line is None or row is None or data is None or proof is None:
                    raise VerificationError(f"{JSONL} or {CSV} has a different number of records")
                seq = orjson.loads(proof)["index"]
                _check_copy(seq, data, line, row, selection, fmt)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise VerificationError(f"{CSV} is not UTF-8 CSV: {exc}") from exc


def _check_copy(
    seq: int, data: bytes, line: bytes, row: list[str], selection: Selection, fmt: str
) -> None:
    columns, envelope = derive(seq, data)
    if not selection.matches(columns, seq):
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
    _compare(f"{CSV} row for seq {seq}", seq, CSV_HEADER, csv_row(seq, columns, fmt), row)


def _compare(where: str, seq: int, names: Any, want: list[Any], got: list[Any]) -> None:
    for name, w, g in zip_longest(names, want, got):
        if w != g:
            raise VerificationError(
                f"{where}: {name} is {g!r} but the sealed record says {w!r}", seq
            )
