"""A real S3 endpoint for the archive tests: moto's standalone server (``moto[server]``).

``moto_s3`` (session-scoped, imported by ``tests/conftest.py``) starts ``python -m
moto.server`` on a free loopback port, waits until it answers, creates a bucket with Object
Lock enabled, and stops the server at the end of the run. ``s3_env`` (per test) sets the
server's credentials in the environment for that test only, with boto3's config files and
the instance metadata lookup turned off, so nothing of the machine's own AWS setup is used.
The product code talks to it as to any S3-compatible store: through ``--s3-endpoint``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "moto-test-access-key"
SECRET_KEY = "moto-test-secret-key"
REGION = "us-east-1"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server: its endpoint URL and a bucket with Object Lock enabled."""

    endpoint: str
    bucket: str

    def client(self) -> S3Client:
        """A boto3 client of the server, with the test credentials given explicitly."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY)  # fmt: skip

    def url(self, prefix: str) -> str:
        """An archive URL in the bucket, under ``prefix``."""
        return f"s3://{self.bucket}/{prefix}"

    def env(self) -> dict[str, str]:
        """The environment a command needs to reach the server (credentials only)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull}  # fmt: skip


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's standalone S3 server with one Object Lock bucket, for the whole run."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = MotoS3(f"http://127.0.0.1:{port}", f"otaudit-archive-{uuid.uuid4().hex[:8]}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                server.client().list_buckets()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        server.client().create_bucket(Bucket=server.bucket, ObjectLockEnabledForBucket=True)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """The moto server, with its credentials in the environment for this test only."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_s3.env().items():
        monkeypatch.setenv(name, value)
    return moto_s3
