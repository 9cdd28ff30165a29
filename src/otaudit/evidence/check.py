"""Checking a pack offline (``otaudit verify-evidence``), with no database.

1. ``MANIFEST`` is a signed note by the log's key (the key in force at the closing
   checkpoint's size, when ``configuration/keys.jsonl`` proves rotations); its header states
   the period and the closing checkpoint.
2. Every file is there with the size and SHA-256 the manifest lists, and nothing else is
   (:func:`~otaudit.evidence.manifest.check_files`): a changed byte, a removed or added
   file is named.
3. The closing checkpoint is signed by the log's key and is the one the manifest names; the
   opening one too; the consistency proof between them holds (RFC 9162 §2.1.4).
4. Per control: the population's row count is the one ``query.json`` states; the sample
   re-draws from the population's seqs with the closing root hash; each sampled record's
   bytes are proven into the closing checkpoint (RFC 9162 §2.1.3).
"""

from __future__ import annotations

import base64
import binascii
import csv
import heapq
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from otaudit import merkle
from otaudit.auditsample import sample_key
from otaudit.bundle.keys import read_key_history
from otaudit.bundle.layout import derive
from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import ConfigError, VerificationError
from otaudit.evidence.manifest import MAX_BYTES, NAME, PackAltered, check_files, open_manifest
from otaudit.evidence.population import sample_size
from otaudit.keyhistory import KeyHistory
from otaudit.keys import VerifierKey
from otaudit.note import parse_note
from otaudit.record import rfc3339_to_ns
from otaudit.textsafety import spreadsheet_row

CLOSING: Final = "completeness/closing.checkpoint"
OPENING: Final = "completeness/opening.checkpoint"
CONSISTENCY: Final = "completeness/consistency.json"
KEY_FILE: Final = "configuration/verifier.key"
KEYS_FILE: Final = "configuration/keys.jsonl"
_SMALL: Final = 4 << 20
#: The longest a CSV cell of a population may be (a record's attributes as JSON text).
_CSV_FIELD: Final = 64 << 20


@dataclass
class EvidenceReport:
    """What a check of a pack found."""

    key: VerifierKey
    origin: str
    period: tuple[str, str]
    tree_size: int
    files: int
    controls: dict[str, int] = field(default_factory=dict)
    sampled: int = 0


def _read(root: Path, name: str, limit: int = _SMALL) -> bytes:
    path = root / name
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise PackAltered(f"{name}: missing", name) from None
    if not stat.S_ISREG(st.st_mode):
        raise PackAltered(f"{name}: not a regular file", name)
    if st.st_size > limit:
        raise PackAltered(f"{name}: larger than {limit} bytes", name)
    return path.read_bytes()


def require_pack(root: Path) -> None:
    """ConfigError unless ``root`` is a directory holding a readable ``MANIFEST``."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    if not os.access(root / NAME, os.R_OK):
        raise ConfigError(f"{root} holds no readable {NAME}: not an evidence pack")


def pack_key(root: Path) -> VerifierKey:
    """The verifier key the pack carries (whoever made the pack chose it)."""
    require_pack(root)
    text = _read(root, KEY_FILE, 4096).decode("utf-8", "replace").strip()
    try:
        return VerifierKey.parse(text)
    except (ConfigError, ValueError) as exc:
        raise PackAltered(f"{KEY_FILE}: not a verifier key: {exc}", KEY_FILE) from None


def _history(root: Path, trusted: VerifierKey) -> tuple[KeyHistory, Checkpoint]:
    """The log's key history, from the pack's original key through the rotations
    ``keys.jsonl`` proves under the closing root, anchored to the ``trusted`` key (which must
    be one of its keys); and the closing checkpoint's body (checked by the caller)."""
    note = _read(root, CLOSING)
    try:
        body = Checkpoint.parse_body(parse_note(note)[0])
    except VerificationError as exc:
        raise PackAltered(f"{CLOSING}: {exc}", CLOSING) from None
    history = KeyHistory(pack_key(root))
    if (root / KEYS_FILE).exists():
        data = _read(root, KEYS_FILE)
        try:
            history = read_key_history(
                data, history.original, body.origin, body.tree_size, body.root_hash
            )
        except VerificationError as exc:
            raise PackAltered(f"{KEYS_FILE}: {exc}", KEYS_FILE) from None
    try:
        return history.anchored(trusted), body
    except VerificationError as exc:
        raise PackAltered(f"{KEY_FILE}: {exc}", KEY_FILE) from None


def _checkpoint(root: Path, name: str, history: KeyHistory, size: int | None) -> Checkpoint:
    note = _read(root, name)
    try:
        body = Checkpoint.parse_body(parse_note(note)[0])
        return open_checkpoint(note, history.key_for(size if size is not None else body.tree_size))
    except VerificationError as exc:
        raise PackAltered(f"{name}: {exc}", name) from None


def _json(root: Path, name: str) -> Any:
    try:
        return orjson.loads(_read(root, name))
    except orjson.JSONDecodeError as exc:
        raise PackAltered(f"{name}: not JSON: {exc}", name) from None


def _consistency(root: Path, opening: Checkpoint | None, closing: Checkpoint) -> None:
    doc = _json(root, CONSISTENCY)
    try:
        size1, size2 = int(doc["size1"]), int(doc["size2"])
        hashes = [bytes.fromhex(h) for h in doc["hashes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise PackAltered(f"{CONSISTENCY}: malformed: {exc}", CONSISTENCY) from None
    if size2 != closing.tree_size or size1 != (opening.tree_size if opening else 0):
        raise PackAltered(f"{CONSISTENCY}: its sizes are not the checkpoints'", CONSISTENCY)
    if opening is None or size1 == 0:
        return
    try:
        merkle.verify_consistency(size1, size2, hashes, opening.root_hash, closing.root_hash)
    except VerificationError as exc:
        raise PackAltered(f"{CONSISTENCY}: {exc}", CONSISTENCY) from None


_SEQ: Final = re.compile(r"[0-9]{1,19}")
#: The columns a sampled record's sealed bytes must give its row, on either store.
_PROVEN: Final = (
    "signal", "time_unix_nano", "trace_id", "span_id", "name", "service", "actor",
    "actor_role", "client_address", "action", "target", "resource_type", "result",
    "producer", "producer_seq", "missing", "pipeline",
)  # fmt: skip
MAX_SAMPLE: Final = 10_000


def _csv_cells(row: dict[str, Any], columns: list[str]) -> list[str]:
    """The CSV cells the pack writes for a JSONL row (``evidence.files.TableFiles``)."""
    return ["" if v is None else str(v) for v in spreadsheet_row(row.get(c) for c in columns)]


def _population(
    root: Path, folder: str, period: Period, wanted: set[int]
) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    """Each row of the population, its CSV and JSONL forms held equal: (seq, JSONL row, CSV
    cells); seqs strictly increasing, inside the tree and the period."""
    name, lines_name = f"{folder}/population.csv", f"{folder}/population.jsonl"
    csv.field_size_limit(_CSV_FIELD)
    try:
        with (root / name).open(newline="", encoding="utf-8") as f, \
                (root / lines_name).open("rb") as lines:  # fmt: skip
            reader = csv.reader(f)
            columns = next(reader, None)
            if not columns or columns[0] != "seq" or "time_unix_nano" not in columns:
                raise PackAltered(f"{name}: the header is not a population's", name)
            last = -1
            for n, cells in enumerate(reader, 2):
                line = lines.readline(_CSV_FIELD)
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise PackAltered(f"{lines_name} line {n - 1}: not JSON", lines_name) from None
                if not isinstance(row, dict) or list(row) != columns:
                    raise PackAltered(f"{lines_name} line {n - 1}: not the CSV's columns",
                                      lines_name)  # fmt: skip
                if _csv_cells(row, columns) != cells:
                    raise PackAltered(f"{name} line {n}: differs from {lines_name}", name)
                seq, at = row["seq"], row["time_unix_nano"]
                if type(seq) is not int or not _SEQ.fullmatch(cells[0]) or seq <= last:
                    raise PackAltered(f"{name} line {n}: seqs must increase", name)
                if (
                    seq >= period.tree_size
                    or type(at) is not int
                    or not (period.from_ns <= at < period.to_ns)
                ):
                    raise PackAltered(f"{name} line {n}: seq {seq} is outside the period or"
                                      " the closing checkpoint's tree", name)  # fmt: skip
                last = seq
                yield seq, row if seq in wanted else {}, cells if seq in wanted else []
            if lines.readline(1):
                raise PackAltered(f"{lines_name}: more rows than {name}", lines_name)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PackAltered(f"{name}: {exc}", name) from None


def _sample_doc(root: Path, folder: str, period: Period) -> tuple[int, list[int], str, int]:
    """``sample.json``: (n, seqs, size basis, population) once its form is checked."""
    name = f"{folder}/sample.json"
    doc = _json(root, name)
    try:
        n, seqs, basis = doc["n"], doc["seqs"], doc["size_basis"]
        population = doc["population"]
        seed = bytes.fromhex(doc["seed"]["root_hash"])
        if not (type(n) is int and 0 <= n <= MAX_SAMPLE and isinstance(seqs, list)
                and len(seqs) == n and all(type(s) is int for s in seqs)
                and len(set(seqs)) == n and isinstance(basis, str)
                and type(population) is int):  # fmt: skip
            raise ValueError("n, seqs, size_basis or population is malformed")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PackAltered(f"{name}: malformed: {exc}", name) from None
    if seed != period.root_hash:
        raise PackAltered(f"{name}: not seeded by the closing checkpoint", name)
    return n, seqs, basis, population


def _expected_size(rows: int, basis: str, period: Period) -> int:
    """The sample size the pack's rule gives ``rows`` under the stated ``basis``."""
    if basis.startswith("--sample-size "):
        given = basis.removeprefix("--sample-size ")
        return min(int(given), rows) if _SEQ.fullmatch(given) else -1
    return sample_size(rows, (period.to_ns - period.from_ns) / 86_400e9, None)[0]


def _control(root: Path, folder: str, period: Period) -> tuple[int, int]:
    """Check one control's population, query and sample; (rows, sampled)."""
    name, sample_name = f"{folder}/population.csv", f"{folder}/sample.json"
    query_name = f"{folder}/query.json"
    query = _json(root, query_name)
    try:
        stated, params = int(query["rows"]), query["parameters"]
        bounds = (params["from"], params["to"], int(params["tree_size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PackAltered(
            f"{folder}/query.json: malformed: {exc}", f"{folder}/query.json"
        ) from None
    if bounds != (period.start, period.end, period.tree_size):
        raise PackAltered(f"{query_name}: another period than the MANIFEST's", query_name)
    n, seqs, basis, population = _sample_doc(root, folder, period)
    wanted = set(seqs)
    rows, heap, held = 0, list[tuple[int, int]](), {}
    for seq, row, cells in _population(root, folder, period, wanted):
        rows += 1
        key = -int.from_bytes(sample_key(period.root_hash, seq))
        if len(heap) < n:
            heapq.heappush(heap, (key, seq))
        elif n and key > heap[0][0]:
            heapq.heapreplace(heap, (key, seq))
        if row:
            held[seq] = (row, cells)
    if rows != stated or population != rows:
        raise PackAltered(f"{name}: {rows} rows, query.json says {stated}", name)
    if n != _expected_size(rows, basis, period):
        raise PackAltered(f"{sample_name}: a sample of {n} is not what its basis gives",
                          sample_name)  # fmt: skip
    if [seq for _, seq in sorted(heap, reverse=True)] != seqs:
        raise PackAltered(f"{sample_name}: the sample does not re-draw from the population "
                          "with the closing checkpoint", sample_name)  # fmt: skip
    _sample_rows(root, folder, seqs, held)
    _sample_proofs(root, folder, seqs, held, period)
    return rows, n


def _sample_rows(
    root: Path, folder: str, seqs: list[int], held: dict[int, tuple[dict[str, Any], list[str]]]
) -> None:
    """``sample.csv`` and ``sample.jsonl`` are the population's rows of the sample's seqs."""
    name, lines_name = f"{folder}/sample.csv", f"{folder}/sample.jsonl"
    try:
        with (root / name).open(newline="", encoding="utf-8") as f:
            cells = list(csv.reader(f))[1:]
        rows = [orjson.loads(line) for line in _read(root, lines_name, 64 << 20).splitlines()]
    except (UnicodeDecodeError, csv.Error, orjson.JSONDecodeError) as exc:
        raise PackAltered(f"{name}: {exc}", name) from None
    if cells != [held[s][1] for s in seqs]:
        raise PackAltered(f"{name}: not the population's rows of the sample", name)
    if rows != [held[s][0] for s in seqs]:
        raise PackAltered(f"{lines_name}: not the population's rows of the sample", lines_name)


def _sample_proofs(
    root: Path,
    folder: str,
    seqs: list[int],
    held: dict[int, tuple[dict[str, Any], list[str]]],
    period: Period,
) -> None:
    """Each sampled record's bytes are proven into the closing checkpoint, and give the
    columns its row shows."""
    name = f"{folder}/sample_proofs.jsonl"
    proven = []
    for n_line, line in enumerate(_read(root, name, 64 << 20).splitlines(), 1):
        try:
            doc = orjson.loads(line)
            seq = int(doc["index"])
            sealed = base64.b64decode(doc["leaf_input_b64"], validate=True)
            hashes = [bytes.fromhex(h) for h in doc["hashes"]]
            if int(doc["tree_size"]) != period.tree_size:
                raise ValueError("not a proof into the closing checkpoint")
            merkle.verify_inclusion(merkle.leaf_hash(sealed), seq, period.tree_size, hashes,
                                    period.root_hash)  # fmt: skip
            columns, _ = derive(seq, sealed)
        except (KeyError, TypeError, ValueError, binascii.Error, orjson.JSONDecodeError,
                VerificationError) as exc:  # fmt: skip
            raise PackAltered(f"{name} line {n_line}: {exc}", name) from None
        row = held.get(seq, ({}, []))[0]
        derived = columns._asdict()
        if any(row.get(c) != derived[c] for c in _PROVEN):
            raise PackAltered(f"{name} line {n_line}: seq {seq}'s sealed bytes do not give the "
                              "row the sample shows", name)  # fmt: skip
        proven.append(seq)
    if proven != seqs:
        raise PackAltered(f"{name}: proves other records than the sample's", name)


@dataclass(frozen=True)
class Period:
    """The period and closing checkpoint the manifest states."""

    start: str
    end: str
    from_ns: int
    to_ns: int
    tree_size: int
    root_hash: bytes


def verify_pack(root: Path, key: VerifierKey) -> EvidenceReport:
    """Check the pack in ``root`` with the log's verifier ``key`` (any key of its history);
    PackAltered (a VerificationError) names the file that does not hold, ConfigError when
    ``root`` is not a pack at all."""
    require_pack(root)
    try:
        return _verify(root, key)
    except OSError as exc:  # unreadable (permissions, I/O): not a finding about the pack
        where = exc.filename or root
        raise ConfigError(f"cannot read {where}: {exc.strerror or exc}") from None


def _verify(root: Path, key: VerifierKey) -> EvidenceReport:
    history, body = _history(root, key)
    signer = history.key_for(body.tree_size)
    try:
        manifest = open_manifest(_read(root, NAME, MAX_BYTES), signer)
    except PackAltered:
        raise
    except VerificationError as exc:
        raise PackAltered(f"{NAME}: {exc}", NAME) from None
    check_files(root, manifest)
    closing = _checkpoint(root, CLOSING, history, None)
    if (closing.tree_size, closing.root_hash.hex()) != (manifest.tree_size, manifest.root_hash):
        raise PackAltered(f"{CLOSING}: not the checkpoint the manifest names", CLOSING)
    opening = _checkpoint(root, OPENING, history, None) if (root / OPENING).exists() else None
    _consistency(root, opening, closing)
    try:
        start, end = manifest.period
        period = Period(start, end, rfc3339_to_ns(start), rfc3339_to_ns(end),
                        closing.tree_size, closing.root_hash)  # fmt: skip
    except ValueError as exc:
        raise PackAltered(f"{NAME}: the period is malformed: {exc}", NAME) from None
    report = EvidenceReport(signer, manifest.origin, manifest.period, manifest.tree_size,
                            len(manifest.files))  # fmt: skip
    controls = sorted({p.split("/")[1] for p in manifest.files if p.startswith("controls/")})
    for control in controls:
        rows, sampled = _control(root, f"controls/{control}", period)
        report.controls[control] = rows
        report.sampled += sampled
    return report
