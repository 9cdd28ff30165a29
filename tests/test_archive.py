"""Archives on a directory (``file:///DIR``): segments, locks, listing, restore, verifying.

Records of a real signed SQLite ledger are archived as segments; each segment is a packed
evidence bundle that ``otaudit verify-bundle`` checks offline with the log's key, and that
fails naming what changed after a byte of it is changed. Rows removed the way pruning
removes them (a receipt, then the range) come back from the archive only when the
archived bytes hash to the leaf the tree still holds, and the restore is on the ledger.
The same on S3 with Object Lock is in ``tests/test_archive_s3.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archive_ledger import CLIENT_RECORDS, Ledger, make_ledger, remove
from otaudit import merkle
from otaudit.access import Reader
from otaudit.archive import (
    RESTORE_ACTION,
    ArchiveResult,
    FileTarget,
    SegmentName,
    archive_records,
    list_segments,
    open_target,
    restore,
    subject_segments,
)
from otaudit.bundle import (
    CANONICAL,
    MANIFEST,
    MANIFEST_SIG,
    Selection,
    pack_bundle,
    unpack_bundle,
)
from otaudit.errors import ConfigError, Conflict, NotFound, VerificationError
from otaudit.ownrecords import DirectAppender
from support import otaudit

RETAIN = datetime(2031, 1, 1, tzinfo=UTC)
VERIFYING = Path(__file__).resolve().parent.parent / "docs" / "verifying.md"


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return make_ledger(tmp_path / "data")


def _archive(
    ledger: Ledger, url: str, held: Iterable[int] = (), max_records: int = 100_000
) -> ArchiveResult:
    """Archive every record; the client records retained until RETAIN plus seq days."""
    seqs = list(range(ledger.size))
    until = {s: RETAIN + timedelta(days=s) for s in seqs if s < CLIENT_RECORDS}
    return archive_records(
        ledger.store, ledger.key.verifier(), open_target(url), seqs, until, set(held),
        signer=ledger.key, max_records=max_records,
    )  # fmt: skip


def test_segments_are_named_by_seq_range_and_carry_their_locks(
    ledger: Ledger, tmp_path: Path
) -> None:
    url = f"file://{tmp_path}/arch"
    result = _archive(ledger, url, held={12}, max_records=10)
    names = [str(SegmentName(a, a + 9)) for a in (0, 10, 20)]
    assert result.records == 30 and result.segments == names and result.skipped == []
    assert names[0] == "segment-000000000000-000000000009.tar.gz"
    listed = list_segments(open_target(url))
    assert [(s.first_seq, s.last_seq, s.records) for s in listed] == [(0, 9, 10), (10, 19, 10),
                                                                       (20, 29, 10)]  # fmt: skip
    # Retention until the latest date of the segment's records; none when none has one.
    assert [s.retain_until for s in listed] == [RETAIN + timedelta(days=9),
                                                RETAIN + timedelta(days=19), None]  # fmt: skip
    assert [s.mode for s in listed] == ["COMPLIANCE", "COMPLIANCE", None]
    assert [s.legal_hold for s in listed] == [False, True, False]
    # Private: the directory 0700, the segments and their lock files 0600.
    assert stat.S_IMODE((tmp_path / "arch").stat().st_mode) == 0o700
    for path in (tmp_path / "arch").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_archiving_the_same_records_again_writes_nothing(ledger: Ledger, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/arch"
    first = _archive(ledger, url, max_records=16)
    again = _archive(ledger, url, max_records=16)
    assert again.segments == [] and again.skipped == first.segments and again.records == 30
    # Other seqs within the same first and last: a new name, nothing overwritten.
    seqs = [0, 1, 2, 15]
    other = archive_records(ledger.store, ledger.key.verifier(), open_target(url), seqs, {},
                            set(), max_records=16)  # fmt: skip
    assert other.segments == ["segment-000000000000-000000000015-2.tar.gz"]
    assert len(list_segments(open_target(url))) == 3


def test_a_segment_verifies_offline_and_a_changed_byte_fails(
    ledger: Ledger, tmp_path: Path
) -> None:
    url = f"file://{tmp_path}/arch"
    (name,) = _archive(ledger, url).segments
    segment = tmp_path / "arch" / name
    key = ledger.key.verifier_key()
    ok = otaudit("verify-bundle", str(segment), "--key", key, "--require-signed-manifest")
    assert ok.returncode == 0, ok.stderr
    assert "OK: 30 records" in ok.stdout and "seq in 0-29" in ok.stdout
    # tar -xzf gives the bundle directory: the same check passes on it.
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with open(segment, "rb") as f:
        unpack_bundle(f, unpacked)
    assert otaudit("verify-bundle", str(unpacked), "--key", key).returncode == 0
    # So does the standalone verifier of docs/verifying.md, without otaudit.
    script = VERIFYING.read_text().split("### Checking a bundle without otaudit", 1)[1]
    (tmp_path / "check_bundle.py").write_text(script.split("```python\n", 1)[1].split("```")[0])
    standalone = subprocess.run([sys.executable, str(tmp_path / "check_bundle.py"),
                                 str(unpacked), key], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
    assert standalone.returncode == 0, standalone.stderr
    # One byte of one record changed, repacked: exit 1 naming the record.
    data = (unpacked / CANONICAL).read_bytes()
    (unpacked / CANONICAL).write_bytes(data.replace(b"alice", b"alicf", 1))
    changed = tmp_path / "changed.tar.gz"
    with open(changed, "wb") as out:
        pack_bundle(unpacked, out)
    failed = otaudit("verify-bundle", str(changed), "--key", key)
    assert failed.returncode == 1 and "FAILED" in failed.stdout + failed.stderr
    # A byte of the packed file itself changed: damaged, exit 1.
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(raw)
    assert otaudit("verify-bundle", str(damaged), "--key", key).returncode == 1


def test_a_segment_holding_anything_else_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as z, tarfile.open(fileobj=z, mode="w") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VerificationError, match="not a bundle file"):
        unpack_bundle(io.BytesIO(buf.getvalue()), out)
    assert list(out.iterdir()) == []


def test_a_removed_record_is_restored_from_its_segment(ledger: Ledger, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/arch"
    _archive(ledger, url, max_records=10)
    before = {r.seq: r for r in ledger.store.iter_records(0, 30)}
    remove(ledger.store, 3, 14)
    assert ledger.store.present_seqs(0, 29) == [0, 1, 2, *range(15, 30)]
    target = open_target(url)
    recorded = restore(ledger.store, ledger.key.verifier(), target, 12,
                       DirectAppender(ledger.store), Reader("carol"))  # fmt: skip
    (row,) = ledger.store.iter_records(12, 13)
    assert merkle.leaf_hash(row.sealed) == ledger.store.nodes([(0, 12)])[0]
    assert (row.sealed, row.columns) == (before[12].sealed, before[12].columns)
    (own,) = ledger.store.iter_records(recorded, recorded + 1)
    assert own.columns.action == RESTORE_ACTION and own.columns.actor == "carol"
    assert own.columns.target == "12" and "segment-000000000010-000000000019" in own.sealed.decode()
    with pytest.raises(Conflict, match="seq 12 is in the ledger already"):
        restore(ledger.store, ledger.key.verifier(), target, 12,
                DirectAppender(ledger.store), Reader("carol"))  # fmt: skip
    with pytest.raises(NotFound, match="not in the ledger"):
        restore(ledger.store, ledger.key.verifier(), target, 10**6,
                DirectAppender(ledger.store), Reader("carol"))  # fmt: skip
    # The CLI: an audited restore of another record.
    done = otaudit("archive", "restore", url, "--seq", "4", "--data", str(ledger.data))
    assert done.returncode == 0, done.stderr
    assert "restored seq 4" in done.stdout
    assert ledger.store.present_seqs(4, 4) == [4]


def test_restore_is_refused_when_the_segment_was_changed(ledger: Ledger, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/arch"
    (name,) = _archive(ledger, url).segments
    remove(ledger.store, 5, 5)
    segment = tmp_path / "arch" / name
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with open(segment, "rb") as f:
        unpack_bundle(f, unpacked)
    lines = (unpacked / CANONICAL).read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"alice", b"malle")  # same length: the sizes still match
    (unpacked / CANONICAL).write_bytes(b"\n".join(lines))
    segment.unlink()
    with open(segment, "wb") as out:
        pack_bundle(unpacked, out)
    with pytest.raises(VerificationError, match=r"seq 5: the record in .* does not hash") as err:
        restore(ledger.store, ledger.key.verifier(), open_target(url), 5,
                DirectAppender(ledger.store), Reader("carol"))  # fmt: skip
    assert err.value.seq == 5
    assert ledger.store.present_seqs(5, 5) == []
    cli = otaudit("archive", "restore", url, "--seq", "5", "--data", str(ledger.data))
    assert cli.returncode == 1 and "does not hash to the stored leaf" in cli.stdout + cli.stderr


def test_segments_holding_a_subject_are_found(ledger: Ledger, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/arch"
    _archive(ledger, url, max_records=10)
    target = open_target(url)
    assert [s.first_seq for s in subject_segments(target, "alice")] == [0, 10]
    assert [s.first_seq for s in subject_segments(target, "user3")] == [20]  # actor
    assert [s.first_seq for s in subject_segments(target, "doc-7")] == [20]  # target
    assert subject_segments(target, "nobody") == []


def test_archive_list_prints_each_segment(ledger: Ledger, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/arch"
    _archive(ledger, url, held={25}, max_records=20)
    listed = otaudit("archive", "list", url, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["first_seq"], r["last_seq"], r["records"], r["legal_hold"]) for r in rows] == [
        (0, 19, 20, "off"), (20, 29, 10, "on")]  # fmt: skip
    assert rows[0]["retain_until"] == (RETAIN + timedelta(days=19)).isoformat()
    table = otaudit("archive", "list", url)
    assert "segment-000000000020-000000000029.tar.gz" in table.stdout


def test_records_not_under_a_checkpoint_or_removed_are_not_archived(
    ledger: Ledger, tmp_path: Path
) -> None:
    target = FileTarget(tmp_path / "arch", f"file://{tmp_path}/arch")
    remove(ledger.store, 2, 3)  # the receipt (seq 30) is after the checkpoint
    with pytest.raises(ConfigError, match="seq 30 is not under the latest signed checkpoint"):
        archive_records(ledger.store, ledger.key.verifier(), target, [29, 30], {}, set())
    with pytest.raises(ConfigError, match="seq 2 is not stored"):
        archive_records(ledger.store, ledger.key.verifier(), target, [1, 2], {}, set())
    assert not (tmp_path / "arch").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/dir", "expected file:///DIR or s3://BUCKET/PREFIX"),
        ("file://relative/dir", "file:///ABSOLUTE/DIR"),
        ("s3://Not_A_Bucket/x", "expected s3://BUCKET/PREFIX"),
        ("archive", "expected file:///DIR"),
    ],
)
def test_a_bad_url_is_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        open_target(url)
    cli = otaudit("archive", "list", url)
    assert cli.returncode == 2 and message in cli.stderr


def test_a_segment_must_hold_every_seq_its_manifest_selects(ledger: Ledger, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/arch"
    seqs = [1, 2, 3, 7, 8]
    (name,) = archive_records(ledger.store, ledger.key.verifier(), open_target(url), seqs, {},
                              set(), signer=ledger.key).segments  # fmt: skip
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with open(tmp_path / "arch" / name, "rb") as f:
        unpack_bundle(f, unpacked)
    manifest = json.loads((unpacked / MANIFEST).read_text())
    assert manifest["selection"]["seq_ranges"] == [[1, 3], [7, 8]]
    key = ledger.key.verifier_key()
    assert otaudit("verify-bundle", str(unpacked), "--key", key).returncode == 0
    # Whoever edits the selection must drop the manifest's signature, and still fails:
    # a seq it selects is not in the bundle, or a record in it is not selected.
    (unpacked / MANIFEST_SIG).unlink()
    for ranges, message in (([[1, 3], [7, 9]], "selects 6 records by seq, the bundle has 5"),
                            ([[1, 3], [8, 9]], "seq 7: not in the selection")):  # fmt: skip
        manifest["selection"]["seq_ranges"] = ranges
        (unpacked / MANIFEST).write_text(json.dumps(manifest))
        failed = otaudit("verify-bundle", str(unpacked), "--key", key)
        assert failed.returncode == 1 and message in failed.stdout + failed.stderr


@pytest.mark.parametrize(
    "ranges", [[[3, 1]], [[1, 3], [4, 5]], [[5, 6], [1, 2]], [[1]], [["1", 2]], [[True, 2]], 7]
)
def test_a_malformed_seq_selection_is_refused(ranges: object) -> None:
    stated = {"since_utc": None, "until_utc": None, "actions": [], "seq_ranges": ranges}
    with pytest.raises(VerificationError, match="selection is malformed"):
        Selection.from_manifest(stated)
