"""Opening an archive by its URL: ``file:///DIR`` or ``s3://BUCKET/PREFIX``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from otaudit.archive.files import FileTarget
from otaudit.archive.target import ArchiveTarget
from otaudit.errors import ConfigError


def open_target(url: str, s3_endpoint: str | None = None) -> ArchiveTarget:
    """The target of ``url``: ``file:///DIR`` (an absolute directory) or
    ``s3://BUCKET/PREFIX`` (``s3_endpoint``: an S3-compatible store's URL, e.g. MinIO's;
    default AWS). ConfigError for any other URL, or when the target cannot be used."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if s3_endpoint is not None:
            raise ConfigError("--s3-endpoint is for s3:// archives, not file://")
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"archive URL {url!r}: a file URL is file:///ABSOLUTE/DIR")
        if parts.query or parts.fragment:
            raise ConfigError(f"archive URL {url!r}: a file URL has no query or fragment")
        return FileTarget(Path(unquote(parts.path)), url)
    if parts.scheme == "s3":
        from otaudit.archive.s3 import S3Target  # boto3 is imported only for S3 archives

        return S3Target.connect(url, s3_endpoint)
    raise ConfigError(f"archive URL {url!r}: expected file:///DIR or s3://BUCKET/PREFIX")
