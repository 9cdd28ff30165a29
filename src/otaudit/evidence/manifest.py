"""A pack's ``MANIFEST``: the SHA-256 of every file, signed as a note with the log's key.

``MANIFEST`` is a signed note (c2sp.org/signed-note) whose text is::

    otaudit-evidence-manifest/1
    origin <the log's origin>
    period <from> <to>
    checkpoint <tree size> <root hash, hex>
    files <count>
    <sha256 hex> <size in bytes> <path>
    ...

one line per file of the pack but ``MANIFEST`` itself, paths relative to the pack, sorted.
Its first line is never a decimal number, so the note can never pass for a checkpoint.
:func:`check_files` holds a folder against it: every file listed is there with that size and
hash, and nothing else is.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from otaudit.errors import ConfigError, VerificationError
from otaudit.note import NoteSigner, NoteVerifier, open_note, sign_note

NAME: Final = "MANIFEST"
HEADER: Final = "otaudit-evidence-manifest/1"
#: The largest manifest read, and the most files a pack may hold.
MAX_BYTES: Final = 4 << 20
MAX_FILES: Final = 20_000
_PATH: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_LINE: Final = re.compile(r"([0-9a-f]{64}) ([0-9]{1,15}) (\S+)")
_CHUNK: Final = 1 << 20


class PackAltered(VerificationError):
    """A file of the pack differs from what the manifest lists; ``path`` names it."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Manifest:
    """What a manifest states."""

    origin: str
    period: tuple[str, str]
    tree_size: int
    root_hash: str
    files: dict[str, tuple[str, int]]  # path -> (sha256 hex, size)


def manifest_text(m: Manifest) -> str:
    """The text the manifest's signature signs."""
    for path in m.files:
        if not _PATH.fullmatch(path) or ".." in path.split("/"):
            raise ValueError(f"{path!r} cannot be listed in a manifest")
    lines = [
        HEADER,
        f"origin {m.origin}",
        f"period {m.period[0]} {m.period[1]}",
        f"checkpoint {m.tree_size} {m.root_hash}",
        f"files {len(m.files)}",
        *(f"{sha} {size} {path}" for path, (sha, size) in sorted(m.files.items())),
    ]
    return "\n".join(lines) + "\n"


def sign_manifest(m: Manifest, key: NoteSigner) -> str:
    """The signed ``MANIFEST``."""
    return sign_note(manifest_text(m), key)


def _field(line: str, name: str, parts: int, lineno: int) -> list[str]:
    words = line.split(" ")
    if words[0] != name or len(words) != parts + 1:
        raise VerificationError(f"{NAME} line {lineno}: expected '{name}' and {parts} value(s)")
    return words[1:]


def open_manifest(note: bytes, key: NoteVerifier) -> Manifest:
    """The manifest, once its signature by ``key`` is checked; VerificationError naming the
    line of anything malformed."""
    text = open_note(note, key)
    lines = text.removesuffix("\n").split("\n")
    if len(lines) < 5 or lines[0] != HEADER:
        raise VerificationError(f"{NAME} line 1: expected {HEADER!r}")
    if not lines[1].startswith("origin ") or len(lines[1]) == len("origin "):
        raise VerificationError(f"{NAME} line 2: expected 'origin' and the log's origin")
    origin = lines[1].removeprefix("origin ")
    start, end = _field(lines[2], "period", 2, 3)
    size_text, root = _field(lines[3], "checkpoint", 2, 4)
    (count_text,) = _field(lines[4], "files", 1, 5)
    if not size_text.isdigit() or not count_text.isdigit():
        raise VerificationError(f"{NAME}: the tree size and file count must be numbers")
    files: dict[str, tuple[str, int]] = {}
    for n, line in enumerate(lines[5:], 6):
        m = _LINE.fullmatch(line)
        if m is None or not _PATH.fullmatch(m[3]) or ".." in m[3].split("/"):
            raise VerificationError(f"{NAME} line {n}: expected '<sha256> <size> <path>'")
        if m[3] in files or m[3] == NAME:
            raise VerificationError(f"{NAME} line {n}: {m[3]} is listed twice")
        files[m[3]] = (m[1], int(m[2]))
    if len(files) != int(count_text):
        raise VerificationError(f"{NAME}: says {count_text} files and lists {len(files)}")
    return Manifest(origin, (start, end), int(size_text), root, files)


#: How deep a pack's folders go (``controls/<id>/``), with room to spare.
MAX_DEPTH: Final = 8


def shown(path: str) -> str:
    """``path`` as a message may show it: as it is, or quoted if it holds anything but
    printable characters (a newline in a name must not start a line of the output)."""
    return path if path.isprintable() else repr(path)


def pack_files(root: Path) -> list[str]:
    """Every file under ``root`` (relative paths, sorted), MANIFEST included. A symbolic
    link, a special file, a folder nested too deep or too many entries is PackAltered
    naming the path; the walk keeps its own stack, so no depth exhausts it."""
    found: list[str] = []
    entries = 0
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        prefix, depth = stack.pop()
        try:
            with os.scandir(root / prefix if prefix else root) as listing:
                items = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            raise ConfigError(f"cannot read {root / prefix}: {exc.strerror}") from None
        for entry in items:
            rel = f"{prefix}/{entry.name}" if prefix else entry.name
            entries += 1
            if entries > MAX_FILES:
                raise PackAltered(f"the pack holds more than {MAX_FILES} entries", rel)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise PackAltered(f"{shown(rel)}: a symbolic link, which no pack holds", rel)
            if stat.S_ISREG(st.st_mode):
                found.append(rel)
            elif stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                stack.append((rel, depth + 1))
            elif stat.S_ISDIR(st.st_mode):
                raise PackAltered(f"{shown(rel)}: folders nested deeper than a pack's", rel)
            else:
                raise PackAltered(f"{shown(rel)}: not a regular file", rel)
    return sorted(found)


def pack_dirs(root: Path) -> list[str]:
    """Every folder under ``root`` (relative paths), as :func:`pack_files` walks them."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir() and not p.is_symlink()
    )


def file_sha256(path: Path, size: int) -> str:
    """SHA-256 of the file at ``path``, reading at most ``size + 1`` bytes."""
    sha = hashlib.sha256()
    left = size + 1
    with path.open("rb") as f:
        while left > 0 and (chunk := f.read(min(_CHUNK, left))):
            sha.update(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def check_files(root: Path, m: Manifest) -> int:
    """Hold the folder ``root`` against the manifest; the number of files checked.
    PackAltered names the first file that was changed, removed or added, or a folder that
    holds no file of the manifest."""
    present = set(pack_files(root))
    present.discard(NAME)
    for rel in sorted(present - m.files.keys()):
        raise PackAltered(f"{shown(rel)}: not in the manifest (a file was added)", rel)
    folders = {rel.rsplit("/", 1)[0] for rel in m.files if "/" in rel}
    folders |= {f.rsplit("/", i)[0] for f in folders for i in range(1, f.count("/") + 1)}
    for rel in pack_dirs(root):
        if rel not in folders:
            raise PackAltered(f"{shown(rel)}: a folder the manifest does not list", rel)
    for rel, (sha, size) in sorted(m.files.items()):
        if rel not in present:
            raise PackAltered(f"{rel}: listed in the manifest but missing", rel)
        path = root / rel
        try:
            actual = path.stat().st_size
            digest = file_sha256(path, size) if actual == size else ""
        except OSError as exc:
            raise ConfigError(f"cannot read {root / rel}: {exc.strerror}") from None
        if actual != size:
            raise PackAltered(f"{rel}: altered ({actual} bytes, the manifest says {size})", rel)
        if digest != sha:
            raise PackAltered(f"{rel}: altered (its SHA-256 differs from the manifest)", rel)
    return len(m.files)
