"""Archives on S3 with Object Lock, against moto's standalone server (``tests/s3server.py``).

The product reaches the server only as an S3-compatible endpoint (``--s3-endpoint``) with
credentials from the environment. Segments are read back with boto3: COMPLIANCE retention
until the latest retain-until date of their records, a legal hold on the segment of a held
record, and the server refuses to delete a locked object version. Then: list, prune
(remove) and restore, verify-bundle on a segment fetched from the bucket; and the errors
for a missing bucket, missing credentials and an endpoint that does not answer.
"""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions
import pytest

from archive_ledger import Ledger, make_ledger, remove
from otaudit import merkle
from otaudit.access import Reader
from otaudit.archive import archive_records, list_segments, open_target, restore, subject_segments
from otaudit.bundle import CANONICAL, pack_bundle, unpack_bundle
from otaudit.errors import ConfigError, VerificationError
from otaudit.ownrecords import DirectAppender
from s3server import MotoS3, free_port
from support import otaudit

RETAIN = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return make_ledger(tmp_path / "data")


def _prefix(request: pytest.FixtureRequest) -> str:
    return f"t-{request.node.name[:40]}-{time.time_ns()}"


def test_segments_are_locked_until_their_records_retention(
    ledger: Ledger, s3_env: MotoS3, request: pytest.FixtureRequest
) -> None:
    prefix = _prefix(request)
    target = open_target(s3_env.url(prefix), s3_env.endpoint)
    until = {s: RETAIN + timedelta(days=s) for s in range(20)}
    result = archive_records(ledger.store, ledger.key.verifier(), target, list(range(30)),
                             until, {12}, signer=ledger.key, max_records=10)  # fmt: skip
    assert len(result.segments) == 3
    client = s3_env.client()
    heads = [client.head_object(Bucket=s3_env.bucket, Key=f"{prefix}/{n}") for n in result.segments]
    assert [h.get("ObjectLockMode") for h in heads] == ["COMPLIANCE", "COMPLIANCE", None]
    assert [h.get("ObjectLockRetainUntilDate") for h in heads] == [
        RETAIN + timedelta(days=9), RETAIN + timedelta(days=19), None]  # fmt: skip
    assert [h.get("ObjectLockLegalHoldStatus") for h in heads] == [None, "ON", None]
    assert client.get_object_legal_hold(Bucket=s3_env.bucket, Key=f"{prefix}/{result.segments[1]}"
                                        )["LegalHold"]["Status"] == "ON"  # fmt: skip
    # A locked version cannot be deleted before its date; writing the same key again makes
    # a new version and leaves the locked one as it was (moto does not refuse shortening a
    # COMPLIANCE retention, which AWS S3 and MinIO do, so that is not checked here).
    key = f"{prefix}/{result.segments[0]}"
    version = heads[0]["VersionId"]
    original = client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read()
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=s3_env.bucket, Key=key, VersionId=version)
    client.put_object(Bucket=s3_env.bucket, Key=key, Body=b"overwritten?")
    kept = client.get_object(Bucket=s3_env.bucket, Key=key, VersionId=version)
    assert kept["Body"].read() == original and kept["ObjectLockMode"] == "COMPLIANCE"
    client.delete_object(Bucket=s3_env.bucket, Key=key)  # a delete marker over the new version
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=s3_env.bucket, Key=key, VersionId=version)
    restored = client.get_object(Bucket=s3_env.bucket, Key=key, VersionId=version)["Body"].read()
    assert restored == original
    for other in client.list_object_versions(Bucket=s3_env.bucket, Prefix=key)["Versions"]:
        if other["VersionId"] != version:  # put the latest version back to the segment
            client.delete_object(Bucket=s3_env.bucket, Key=key, VersionId=other["VersionId"])
    markers = client.list_object_versions(Bucket=s3_env.bucket, Prefix=key).get("DeleteMarkers", [])
    for marker in markers:
        client.delete_object(Bucket=s3_env.bucket, Key=key, VersionId=marker["VersionId"])
    assert client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read() == original
    # What `archive list` reports is what the bucket holds; archiving again writes nothing.
    listed = list_segments(target)
    assert [(s.first_seq, s.records, s.mode, s.legal_hold) for s in listed] == [
        (0, 10, "COMPLIANCE", False),
        (10, 10, "COMPLIANCE", True),
        (20, 10, None, False),
    ]
    assert listed[1].retain_until == RETAIN + timedelta(days=19)
    again = archive_records(ledger.store, ledger.key.verifier(), target, list(range(30)), until,
                            {12}, max_records=10)  # fmt: skip
    assert again.segments == [] and again.skipped == result.segments
    assert [s.first_seq for s in subject_segments(target, "user4")] == [20]


def test_archive_prune_restore_and_verify_a_fetched_segment(
    ledger: Ledger, s3_env: MotoS3, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = s3_env.url(_prefix(request))
    target = open_target(url, s3_env.endpoint)
    (name,) = archive_records(ledger.store, ledger.key.verifier(), target, list(range(30)),
                              dict.fromkeys(range(30), RETAIN), set(),
                              signer=ledger.key).segments  # fmt: skip
    remove(ledger.store, 0, 29)
    assert ledger.store.present_seqs(0, 29) == []
    restore(ledger.store, ledger.key.verifier(), target, 7, DirectAppender(ledger.store),
            Reader("carol"))  # fmt: skip
    (row,) = ledger.store.iter_records(7, 8)
    assert merkle.leaf_hash(row.sealed) == ledger.store.nodes([(0, 7)])[0]
    cli = otaudit("archive", "restore", url, "--seq", "21", "--s3-endpoint", s3_env.endpoint,
                  "--data", str(ledger.data))  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert ledger.store.present_seqs(0, 29) == [7, 21]
    listed = otaudit("archive", "list", url, "--s3-endpoint", s3_env.endpoint, "--format", "json")
    assert [r["segment"] for r in json.loads(listed.stdout)] == [name]
    # The segment as fetched from the bucket verifies offline with the log's key.
    fetched = tmp_path / name
    got = otaudit("archive", "fetch", url, name, "--out", str(fetched), "--s3-endpoint",
                  s3_env.endpoint)  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert fetched.read_bytes() == target.get(name) and fetched.stat().st_mode & 0o077 == 0
    ok = otaudit("verify-bundle", str(fetched), "--key", ledger.key.verifier_key())
    assert ok.returncode == 0, ok.stderr


def test_a_segment_changed_in_the_bucket_restores_nothing(
    ledger: Ledger, s3_env: MotoS3, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    prefix = _prefix(request)
    target = open_target(s3_env.url(prefix), s3_env.endpoint)
    (name,) = archive_records(ledger.store, ledger.key.verifier(), target, [3, 4, 5], {},
                              set()).segments  # fmt: skip
    remove(ledger.store, 4, 4)
    # Unlocked, the object can be replaced by whoever may write the bucket: one byte of
    # record 4 changed (same length), repacked and put back. Restore refuses it.
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    unpack_bundle(io.BytesIO(target.get(name)), unpacked)
    lines = (unpacked / CANONICAL).read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"alice", b"malle")
    (unpacked / CANONICAL).write_bytes(b"\n".join(lines))
    forged = io.BytesIO()
    pack_bundle(unpacked, forged)
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=f"{prefix}/{name}", Body=forged.getvalue())
    with pytest.raises(VerificationError, match=r"seq 4: the record in .* does not hash"):
        restore(ledger.store, ledger.key.verifier(), target, 4, DirectAppender(ledger.store),
                Reader("carol"))  # fmt: skip
    assert ledger.store.present_seqs(4, 4) == []


def test_a_missing_bucket_or_credentials_or_endpoint_is_a_clear_error(
    s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="bucket no-such-bucket-here does not exist"):
        open_target("s3://no-such-bucket-here/x", s3_env.endpoint)
    with pytest.raises(ConfigError, match="--s3-endpoint 'ftp://x'"):
        open_target(s3_env.url("x"), "ftp://x")
    started = time.monotonic()
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match="the S3 endpoint does not answer"):
        open_target(s3_env.url("x"), dead)
    assert time.monotonic() - started < 60
    cli = otaudit("archive", "list", s3_env.url("x"), "--s3-endpoint", dead)
    assert cli.returncode == 2 and "does not answer" in cli.stderr
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match="no-such-profile"):
        open_target(s3_env.url("x"), s3_env.endpoint)
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        open_target(s3_env.url("x"), s3_env.endpoint)
