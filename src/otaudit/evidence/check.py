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
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from otaudit import merkle
from otaudit.auditsample import sample_key
from otaudit.bundle.keys import read_key_history
from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import ConfigError, VerificationError
from otaudit.evidence.manifest import MAX_BYTES, NAME, PackAltered, check_files, open_manifest
from otaudit.keyhistory import KeyHistory
from otaudit.keys import VerifierKey
from otaudit.note import parse_note

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


def _history(root: Path, key: VerifierKey) -> tuple[KeyHistory, Checkpoint]:
    """The key history, and the closing checkpoint's body (checked by the caller)."""
    note = _read(root, CLOSING)
    try:
        body = Checkpoint.parse_body(parse_note(note)[0])
    except VerificationError as exc:
        raise PackAltered(f"{CLOSING}: {exc}", CLOSING) from None
    if not (root / KEYS_FILE).exists():
        return KeyHistory(key), body
    data = _read(root, KEYS_FILE)
    history = read_key_history(data, key, body.origin, body.tree_size, body.root_hash)
    return history, body


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


def _population_seqs(path: Path, name: str) -> Iterator[int]:
    csv.field_size_limit(_CSV_FIELD)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0] != "seq":
            raise PackAltered(f"{name}: the first column is not seq", name)
        for n, row in enumerate(reader, 2):
            if not row or not row[0].isdigit():
                raise PackAltered(f"{name} line {n}: no seq", name)
            yield int(row[0])


def _control(root: Path, folder: str, closing: Checkpoint) -> tuple[int, int]:
    """Check one control's population against its query and sample; (rows, sampled)."""
    name, sample_file = f"{folder}/population.csv", f"{folder}/sample.json"
    query, sample = _json(root, f"{folder}/query.json"), _json(root, f"{folder}/sample.json")
    try:
        stated, n, seqs = int(query["rows"]), int(sample["n"]), [int(s) for s in sample["seqs"]]
        seed = bytes.fromhex(sample["seed"]["root_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PackAltered(f"{sample_file}: malformed: {exc}", sample_file) from None
    if seed != closing.root_hash:
        raise PackAltered(f"{sample_file}: not seeded by the closing checkpoint", sample_file)
    rows, heap = 0, list[tuple[int, int]]()
    for seq in _population_seqs(root / name, name):
        rows += 1
        key = -int.from_bytes(sample_key(seed, seq))
        if len(heap) < n:
            heapq.heappush(heap, (key, seq))
        elif n and key > heap[0][0]:
            heapq.heapreplace(heap, (key, seq))
    if rows != stated or int(sample["population"]) != rows:
        raise PackAltered(f"{name}: {rows} rows, query.json says {stated}", name)
    drawn = [seq for _, seq in sorted(heap, reverse=True)]
    if drawn != seqs:
        raise PackAltered(f"{sample_file}: the sample does not re-draw from the population "
                          "with the closing checkpoint", sample_file)  # fmt: skip
    proofs = f"{folder}/sample_proofs.jsonl"
    proven = []
    for n_line, line in enumerate(_read(root, proofs, 64 << 20).splitlines(), 1):
        try:
            doc = orjson.loads(line)
            seq = int(doc["index"])
            leaf = merkle.leaf_hash(base64.b64decode(doc["leaf_input_b64"], validate=True))
            hashes = [bytes.fromhex(h) for h in doc["hashes"]]
            if int(doc["tree_size"]) != closing.tree_size:
                raise ValueError("not a proof into the closing checkpoint")
            merkle.verify_inclusion(leaf, seq, closing.tree_size, hashes, closing.root_hash)
        except (KeyError, TypeError, ValueError, binascii.Error, orjson.JSONDecodeError,
                VerificationError) as exc:  # fmt: skip
            raise PackAltered(f"{proofs} line {n_line}: {exc}", proofs) from None
        proven.append(seq)
    if proven != seqs:
        raise PackAltered(f"{proofs}: proves other records than the sample's", proofs)
    return rows, len(seqs)


def verify_pack(root: Path, key: VerifierKey) -> EvidenceReport:
    """Check the pack in ``root`` with the log's verifier ``key``; PackAltered (a
    VerificationError) names the file that does not hold, ConfigError when ``root`` is not
    a pack at all."""
    require_pack(root)
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
    report = EvidenceReport(signer, manifest.origin, manifest.period, manifest.tree_size,
                            len(manifest.files))  # fmt: skip
    controls = sorted({p.split("/")[1] for p in manifest.files if p.startswith("controls/")})
    for control in controls:
        rows, sampled = _control(root, f"controls/{control}", closing)
        report.controls[control] = rows
        report.sampled += sampled
    return report
