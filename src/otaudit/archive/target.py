"""Where archived segments go: one small storage interface, a directory or an S3 bucket.

An :class:`ArchiveTarget` puts, lists and gets whole objects under its URL and reads each
object's lock: COMPLIANCE retention until a date, and a legal hold. ``file:///DIR`` keeps
them as files (:class:`otaudit.archive.files.FileTarget`), ``s3://BUCKET/PREFIX`` as
objects of an S3-compatible store with Object Lock (:class:`otaudit.archive.s3.S3Target`).
:func:`otaudit.archive.urls.open_target` picks one by the URL's scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Final, Protocol

#: The one retention mode otaudit sets: no one, root included, can shorten it or delete
#: the object before its date (S3 Object Lock, COMPLIANCE).
COMPLIANCE: Final = "COMPLIANCE"


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """An object's lock: retention ``mode`` (``COMPLIANCE``, or None: no retention) until
    ``retain_until`` (UTC), and whether a legal hold is on."""

    mode: str | None = None
    retain_until: datetime | None = None
    legal_hold: bool = False


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its name under the target, size in bytes, lock and metadata."""

    name: str
    size_bytes: int
    lock: ObjectLock
    metadata: Mapping[str, str] = field(default_factory=dict)


class ArchiveTarget(Protocol):
    """A place archived objects are written to once and read back from."""

    @property
    def url(self) -> str:
        """The target's URL, as given (``file:///DIR``, ``s3://BUCKET/PREFIX``)."""
        ...

    def put(
        self,
        name: str,
        source: bytes | Path,
        *,
        retain_until: datetime | None = None,
        legal_hold: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Store ``source`` (bytes, or the file at a path) as object ``name``, durably, with
        COMPLIANCE retention until ``retain_until`` (None: none) and a legal hold if asked."""
        ...

    def names(self, prefix: str = "") -> list[str]:
        """The names of the objects that start with ``prefix``, sorted (locks not listed)."""
        ...

    def info(self, name: str) -> ObjectInfo:
        """Size, lock and metadata of object ``name`` (NotFound if there is none)."""
        ...

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """A reader of object ``name``'s bytes, streamed (NotFound if there is none)."""
        ...

    def get(self, name: str) -> bytes:
        """The whole of object ``name`` (for small objects; NotFound if there is none)."""
        ...
