"""Prune with an archive on S3 (moto's standalone server, Object Lock on the bucket):
archive first, held records archived under a legal hold and kept, the archive verifiable
offline, a pruned record restored and verified, and ``erase`` naming the locked copies."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from otaudit import datadir
from otaudit.checkpointer import Checkpointer
from retention_records import DAY_NS, log_record
from s3server import MotoS3
from support import otaudit

POLICY = "minimum: 365d\ndefault: 400d\narchive: 7y\n"


def _ledger(data: Path) -> None:
    data.mkdir(mode=0o700)
    store = datadir.open_store(data, None, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        checkpointer = Checkpointer(store, key, key.name)
        old = time.time_ns() - 500 * DAY_NS
        store.append([log_record("read", old, actor=f"user{i % 4}@example.com")
                      for i in range(40)])  # fmt: skip
        checkpointer.checkpoint()
        store.append([log_record("read", time.time_ns(), actor="user1@example.com")])
        checkpointer.checkpoint()
    finally:
        store.close()


def test_archive_prune_restore_and_erase_on_s3(tmp_path: Path, s3_env: MotoS3) -> None:
    data = tmp_path / "data"
    _ledger(data)
    policy = tmp_path / "retention.yaml"
    policy.write_text(POLICY)
    prefix = f"retention-{tmp_path.name}"  # the bucket is shared by the session's tests
    url = s3_env.url(prefix)
    store = ["--data", str(data)]
    otaudit("hold", "create", *store, "--name", "case", "--reason", "litigation",
            "--actor", "user0@example.com", check=True)  # fmt: skip
    run = otaudit("prune", *store, "--retention", str(policy), "--archive", url,
                  "--s3-endpoint", s3_env.endpoint, "--format", "json", check=True)  # fmt: skip
    out = json.loads(run.stdout)
    assert (out["pruned"], out["held"], out["archived"]) == (30, 10, 40)
    (segment,) = out["segments"]

    # The segment is locked for 7 years from the records' receive time, and held.
    client = s3_env.client()
    bucket = s3_env.bucket
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")["Contents"]
    (key,) = [o["Key"] for o in listed if o["Key"].endswith(".tar.gz")]
    assert key.endswith(segment.rsplit("/", 1)[-1])
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    floor = datetime.now(UTC) + timedelta(days=7 * 365 - 501)
    assert head["ObjectLockRetainUntilDate"] > floor
    assert head["ObjectLockLegalHoldStatus"] == "ON"

    # Offline: the fetched segment verifies as a bundle.
    fetched = tmp_path / "segment.tar.gz"
    otaudit("archive", "fetch", url, segment.rsplit("/", 1)[-1], "--out", str(fetched),
            "--s3-endpoint", s3_env.endpoint, check=True)  # fmt: skip
    vkey = otaudit("key", "show", *store, check=True).stdout.strip().splitlines()[-1]
    assert otaudit("verify-bundle", str(fetched), "--key", vkey).returncode == 0

    # A pruned record comes back, hashing to its leaf, and the ledger verifies.
    pruned_seq = 1  # user1: not held
    otaudit("archive", "restore", url, "--seq", str(pruned_seq), *store,
            "--s3-endpoint", s3_env.endpoint, check=True)  # fmt: skip
    verify = otaudit("verify", *store, check=True)
    assert "OK: 30 records pruned under 1 receipts" in verify.stdout

    # Erasing user1: the restored record goes again, the archived copy is reported locked.
    erased = otaudit("erase", *store, "--subject", "user1@example.com", "--reason", "DSR-9",
                     "--archive", url, "--s3-endpoint", s3_env.endpoint,
                     "--format", "json")  # fmt: skip
    assert erased.returncode == 0, erased.stderr
    result = json.loads(erased.stdout)
    assert result["erased"] == 2  # the restored record and the one received now
    assert [a["mode"] for a in result["archives"]] == ["COMPLIANCE"]
    assert otaudit("verify", *store).returncode == 0
