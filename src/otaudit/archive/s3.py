"""``s3://BUCKET/PREFIX``: an archive in an S3-compatible object store, through boto3.

Plain S3 calls only (``HeadBucket``, ``PutObject`` or a multipart upload, ``ListObjectsV2``,
``HeadObject``, ``GetObject``), so the same code works against AWS S3, MinIO and other
S3-compatible stores with Object Lock. Credentials come from boto3's usual chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, the config and
credentials files, an instance or container role); ``--s3-endpoint`` names another store
than AWS (path-style addressing is used then). Every call has bounded timeouts and at most
:data:`MAX_ATTEMPTS` attempts; every failure becomes a ConfigError (NotFound for a missing
object) that names the bucket and what was being done.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as boto_errors
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from urllib3.exceptions import HTTPError as Urllib3Error

from otaudit.archive.target import COMPLIANCE, ObjectInfo, ObjectLock
from otaudit.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Seconds to wait for a connection, and for each read of an answer.
CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 60.0
#: Attempts per call (the first and the retries), botocore's "standard" retry mode.
MAX_ATTEMPTS: Final = 3
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_CHUNK: Final = 1 << 20


class S3Target:
    """Objects under ``PREFIX/`` in one bucket; see the module docstring. Made by
    :meth:`connect`, which checks the URL, the credentials and that the bucket answers."""

    def __init__(self, client: S3Client, bucket: str, prefix: str, url: str) -> None:
        self.client, self.bucket, self.prefix, self._url = client, bucket, prefix, url

    @classmethod
    def connect(cls, url: str, endpoint: str | None = None) -> S3Target:
        """The target of ``s3://BUCKET/PREFIX`` (at ``endpoint`` if given); ConfigError for a
        bad URL or endpoint, no credentials, a bucket that is missing or refused, or an
        endpoint that does not answer."""
        parts = urlsplit(url)
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if not _BUCKET.fullmatch(bucket) or parts.query or parts.fragment or "//" in parts.path:
            raise ConfigError(f"archive URL {url!r}: expected s3://BUCKET/PREFIX")
        if endpoint is not None:
            given = urlsplit(endpoint)
            if given.scheme not in ("http", "https") or not given.hostname:
                raise ConfigError(f"--s3-endpoint {endpoint!r}: expected http(s)://HOST[:PORT]")
        try:
            session = boto3.session.Session()
            credentials = session.get_credentials()
        except boto_errors.BotoCoreError as exc:  # a profile that is not configured, ...
            raise ConfigError(f"archive {url}: AWS configuration: {exc}") from exc
        if credentials is None:
            raise ConfigError(
                f"archive {url}: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or use an instance role)"
            )
        config = Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint else "auto"},
        )
        client = session.client(
            "s3", endpoint_url=endpoint, config=config,
            region_name=session.region_name or "us-east-1",
        )  # fmt: skip
        target = cls(client, bucket, prefix, url)
        with target._errors("opening the bucket"):
            client.head_bucket(Bucket=bucket)
        return target

    @property
    def url(self) -> str:
        """The target's URL, as given."""
        return self._url

    def put(
        self,
        name: str,
        source: bytes | Path,
        *,
        retain_until: datetime | None = None,
        legal_hold: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Upload object ``name`` (a multipart upload for a large file) with its lock: the
        bucket must have Object Lock enabled when a retention or hold is asked for."""
        extra: dict[str, Any] = {"Metadata": dict(metadata or {})}
        if retain_until is not None:
            extra["ObjectLockMode"] = COMPLIANCE
            extra["ObjectLockRetainUntilDate"] = _utc(retain_until)
        if legal_hold:
            extra["ObjectLockLegalHoldStatus"] = "ON"
        with self._errors(f"writing {name}"):
            if isinstance(source, bytes):
                self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=source,
                                       ChecksumAlgorithm="SHA256", **extra)  # fmt: skip
            else:
                extra["ChecksumAlgorithm"] = "SHA256"
                self.client.upload_file(str(source), self.bucket, self._key(name),
                                        ExtraArgs=extra, Config=TransferConfig(
                                            multipart_threshold=64 << 20))  # fmt: skip

    def names(self, prefix: str = "") -> list[str]:
        """The names (under the target's prefix) of the objects that start with ``prefix``."""
        base = self._key("")
        found: list[str] = []
        with self._errors("listing objects"):
            pages = self.client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=base + prefix):
                found += [o["Key"][len(base) :] for o in page.get("Contents", []) if "Key" in o]
        return sorted(found)

    def info(self, name: str) -> ObjectInfo:
        """Size, lock and metadata of object ``name`` (``HeadObject``)."""
        with self._errors(f"reading {name}", name):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        until = head.get("ObjectLockRetainUntilDate")
        lock = ObjectLock(head.get("ObjectLockMode"), None if until is None else _utc(until),
                          head.get("ObjectLockLegalHoldStatus") == "ON")  # fmt: skip
        return ObjectInfo(name, head.get("ContentLength", 0), lock, head.get("Metadata", {}))

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """A buffered reader of object ``name``, streamed from ``GetObject``."""
        return self._reader(name)

    def get(self, name: str) -> bytes:
        """The whole of object ``name``."""
        with self.open(name) as f:
            return f.read()

    @contextmanager
    def _reader(self, name: str) -> Iterator[IO[bytes]]:
        with self._errors(f"reading {name}", name):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        try:
            yield io.BufferedReader(_Body(body, f"{self.url}: reading {name}"), _CHUNK)
        finally:
            body.close()

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    @contextmanager
    def _errors(self, doing: str, name: str | None = None) -> Iterator[None]:
        """Turn what boto3 raises into a ConfigError (NotFound: no object ``name``)."""
        where = f"archive {self.url}: {doing}"
        try:
            yield
        except boto_errors.NoCredentialsError as exc:
            raise ConfigError(f"{where}: no AWS credentials") from exc
        except (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError,
                boto_errors.ReadTimeoutError) as exc:  # fmt: skip
            raise ConfigError(f"{where}: the S3 endpoint does not answer: {exc}") from exc
        except boto_errors.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "?"))
            if name is not None and code in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(f"archive {self.url} has no object {name}") from exc
            if code in ("404", "NoSuchBucket"):
                raise ConfigError(f"{where}: bucket {self.bucket} does not exist") from exc
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise ConfigError(f"{where}: access denied ({code})") from exc
            raise ConfigError(f"{where}: {code}: {error.get('Message', exc)}") from exc
        except boto_errors.BotoCoreError as exc:
            raise ConfigError(f"{where}: {exc}") from exc


class _Body(io.RawIOBase):
    """A raw reader over botocore's streamed body; a failed read is a ConfigError."""

    def __init__(self, body: Any, where: str) -> None:
        self.body, self.where = body, where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data: bytes = self.body.read(len(buffer))
        except (boto_errors.BotoCoreError, Urllib3Error) as exc:
            raise ConfigError(f"archive {self.where}: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)


def _utc(when: datetime) -> datetime:
    """``when`` in UTC (a naive datetime is taken as UTC)."""
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)
