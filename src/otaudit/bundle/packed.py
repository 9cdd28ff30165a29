"""A bundle packed as one file: the form an archive segment is stored in.

A packed bundle is a gzip-compressed POSIX tar (``.tar.gz``) of the bundle's files and
nothing else: no directories, links or devices, each name at most once, in the order of
:data:`ORDER` (the manifest first, so that a reader learns every other file's size before
it reads it, then the checkpoint and keys, then the records). Its entries are written with
mode 0600, owner 0 and time 0, so packing the same files gives the same bytes.

``otaudit verify-bundle FILE.tar.gz`` unpacks it into a private temporary directory and
verifies that (:func:`verify_packed`); ``tar -xzf`` gives the same directory, for the
standalone verifier of ``docs/verifying.md``.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

import orjson

from otaudit.bundle.check import verify_bundle
from otaudit.bundle.keys import KEYS
from otaudit.bundle.layout import (
    CANONICAL,
    CHECKPOINT,
    CSV,
    JSONL,
    MANIFEST,
    MANIFEST_SIG,
    MAX_BYTES,
    PROOFS,
    VERIFIER_KEY,
    Report,
)
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import VerifierKey
from otaudit.progress import Progress

#: How a packed bundle's name ends.
PACKED_SUFFIX: Final = ".tar.gz"
#: The order of the files in a packed bundle (those the bundle has).
ORDER: Final = (MANIFEST, MANIFEST_SIG, CHECKPOINT, VERIFIER_KEY, KEYS, CANONICAL, PROOFS,
                JSONL, CSV)  # fmt: skip
_CHUNK: Final = 1 << 20


def pack_bundle(directory: Path, out: BinaryIO) -> None:
    """Write the bundle in ``directory`` to ``out`` as a packed bundle (its regular files
    named in :data:`ORDER`, in that order; ConfigError if the directory holds anything else)."""
    names = {p.name for p in directory.iterdir()}
    if extra := sorted(names - set(ORDER)):
        raise ConfigError(f"{directory / extra[0]} is not a bundle file; nothing packed")
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in (n for n in ORDER if n in names):
            with open(directory / name, "rb", opener=_no_follow) as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise ConfigError(f"{directory / name} is not a regular file")
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = st.st_size, 0o600, 0
                tar.addfile(info, f)


def read_packed(source: IO[bytes]) -> Generator[tuple[str, IO[bytes]], None, None]:
    """The files of the packed bundle read from ``source``, in order, each as its name and a
    reader of its bytes (valid until the next one is asked for).

    VerificationError, naming the entry, for anything a packed bundle does not hold: an
    entry that is not a regular file, an unknown or repeated name, a file before the
    manifest, a file larger than its limit or than the manifest says, or damaged data."""
    sizes: dict[str, Any] = {}
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=source, mode="r|gz") as tar:
            for member in tar:
                name = member.name
                if not member.isreg() or name not in ORDER or name in seen:
                    what = "repeated" if name in seen else "not a bundle file"
                    raise VerificationError(f"packed bundle: entry {name!r} is {what}")
                if not seen and name != MANIFEST:
                    raise VerificationError(f"packed bundle: {name} comes before {MANIFEST}")
                seen.add(name)
                listed = sizes.get(name)
                limit = MAX_BYTES.get(name, listed["bytes"] if isinstance(listed, dict) else 0)
                if not isinstance(limit, int) or member.size > limit:
                    raise VerificationError(
                        f"packed bundle: {name} is {member.size} bytes, more than {MANIFEST} "
                        "or the format allows"
                    )
                reader = tar.extractfile(member)
                assert reader is not None  # a regular file
                if name == MANIFEST:
                    raw = reader.read()
                    sizes = _listed(raw)
                    yield name, io.BytesIO(raw)
                else:
                    yield name, reader
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise VerificationError(f"packed bundle is damaged: {exc}") from exc


def unpack_bundle(source: IO[bytes], directory: Path) -> None:
    """Write the files of the packed bundle read from ``source`` into ``directory`` (which
    exists and is this process's own), each a new file of mode 0600."""
    for name, reader in read_packed(source):
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := reader.read(_CHUNK):
                out.write(chunk)


def verify_packed(
    path: Path,
    key: VerifierKey | None = None,
    *,
    require_signed_manifest: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Check the packed bundle at ``path`` offline: unpack it into a private temporary
    directory and verify that (:func:`otaudit.bundle.verify_bundle`, same arguments)."""
    try:
        source = open(path, "rb", opener=_no_follow)  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with source, tempfile.TemporaryDirectory(prefix="otaudit-bundle-") as tmp:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            raise ConfigError(f"{path} is not a regular file")
        unpack_bundle(source, Path(tmp))
        return verify_bundle(Path(tmp), key, require_signed_manifest=require_signed_manifest,
                             progress=progress)  # fmt: skip


def packed_manifest(source: IO[bytes]) -> dict[str, Any]:
    """The manifest of the packed bundle read from ``source`` (its first file), unchecked."""
    files = read_packed(source)
    try:
        name, reader = next(files, ("", io.BytesIO()))
        manifest = orjson.loads(reader.read()) if name == MANIFEST else None
    finally:
        files.close()
    if not isinstance(manifest, dict):
        raise VerificationError(f"packed bundle: {MANIFEST} is missing")
    return manifest


def _listed(raw: bytes) -> dict[str, Any]:
    """The ``files`` the manifest lists, to bound the sizes of the entries after it."""
    try:
        files = orjson.loads(raw).get("files")
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise VerificationError(f"packed bundle: {MANIFEST} is not a JSON object") from exc
    if not isinstance(files, dict):
        raise VerificationError(f"packed bundle: {MANIFEST} lists no files")
    return files


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
