"""``file:///DIR``: an archive in a local directory (no enforcement of its locks)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

import orjson

from otaudit.archive.target import COMPLIANCE, ObjectInfo, ObjectLock
from otaudit.errors import ConfigError, NotFound

#: How the lock of a file target's object is kept: in a file beside it, with this suffix.
LOCK_SUFFIX: Final = ".lock.json"
_CHUNK: Final = 1 << 20


class FileTarget:
    """Objects as files in a directory (mode 0700, files 0600), written atomically.

    Each object is written to a temporary file, flushed to disk and renamed into place, and
    the directory is synced. Its lock is written beside it as ``NAME.lock.json``
    (``{"mode", "retain_until", "legal_hold"}``) for :meth:`info` to report; nothing
    enforces it: anyone who can write the directory can delete the files. Use S3 with
    Object Lock where the archive itself must resist deletion.
    """

    def __init__(self, directory: Path, url: str) -> None:
        self.directory = directory
        self._url = url

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
        """Write object ``name`` and its lock file; ConfigError if it exists already."""
        path = self._path(name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = {"mode": COMPLIANCE if retain_until else None,
                "retain_until": None if retain_until is None else _utc_text(retain_until),
                "legal_hold": legal_hold, "metadata": dict(metadata or {})}  # fmt: skip
        self._write(path, source)
        self._write(path.with_name(path.name + LOCK_SUFFIX), orjson.dumps(lock) + b"\n")

    def names(self, prefix: str = "") -> list[str]:
        """The names of the objects that start with ``prefix``, sorted (none while the
        directory does not exist, as under an S3 prefix nothing was written to)."""
        if not os.path.lexists(self.directory):
            return []
        if not self.directory.is_dir() or self.directory.is_symlink():
            raise ConfigError(f"archive {self.url}: {self.directory} is not a directory")
        found = [
            str(p.relative_to(self.directory))
            for p in self.directory.rglob("*")
            if p.is_file() and not p.is_symlink() and not p.name.endswith(LOCK_SUFFIX)
            and not p.name.startswith(".")
        ]  # fmt: skip
        return sorted(n for n in found if n.startswith(prefix))

    def info(self, name: str) -> ObjectInfo:
        """Size, lock and metadata of object ``name``."""
        path = self._path(name)
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise NotFound(f"archive {self.url} has no object {name}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"archive {self.url}: {name} is not a regular file")
        lock, metadata = ObjectLock(), {}
        side = path.with_name(path.name + LOCK_SUFFIX)
        if side.is_file():
            try:
                held = orjson.loads(side.read_bytes())
                until = held.get("retain_until")
                lock = ObjectLock(held.get("mode"), None if until is None else _parse_utc(until),
                                  bool(held.get("legal_hold")))  # fmt: skip
                metadata = {str(k): str(v) for k, v in held.get("metadata", {}).items()}
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
                raise ConfigError(f"archive {self.url}: {side.name} is malformed: {exc}") from exc
        return ObjectInfo(name, st.st_size, lock, metadata)

    @contextmanager
    def _reader(self, name: str) -> Iterator[IO[bytes]]:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"archive {self.url} has no object {name}") from None
        except OSError as exc:
            raise ConfigError(f"archive {self.url}: cannot read {name}: {exc}") from exc
        with os.fdopen(fd, "rb") as f:
            yield f

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """A reader of object ``name``."""
        return self._reader(name)

    def get(self, name: str) -> bytes:
        """The whole of object ``name``."""
        with self.open(name) as f:
            return f.read()

    def _path(self, name: str) -> Path:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise ConfigError(f"archive object name {name!r} is not a relative name")
        return self.directory / name

    def _write(self, path: Path, source: bytes | Path) -> None:
        """Write ``path`` once: a temporary file beside it, synced, linked into place (never
        over an existing file), the directory synced."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    with open(source, "rb") as f:
                        while chunk := f.read(_CHUNK):
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ConfigError(f"archive {self.url} already has {path.name}") from None
        finally:
            os.unlink(tmp)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _utc_text(when: datetime) -> str:
    """``when`` as UTC ISO 8601 text (a naive datetime is taken as UTC)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _parse_utc(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
