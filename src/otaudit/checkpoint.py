"""Transparency-log checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is a signed note (c2sp.org/signed-note, :mod:`otaudit.note`) whose text is the
log's origin, its tree size in decimal, the base64 root hash of the RFC 6962/9162 Merkle tree,
and optional extension lines, signed with an Ed25519 key (:mod:`otaudit.keys`).

Parsing is strict: malformed or badly signed checkpoints raise
:class:`~otaudit.errors.VerificationError`, saying what was expected and what was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otaudit.errors import VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import (
    b64decode_strict,
    b64encode,
    excerpt,
    open_note,
    sign_note,
    text_problem,
)

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "open_checkpoint",
    "sign_checkpoint",
]

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size accepted in a checkpoint (an unsigned 64-bit integer, as in Go)."""

_TREE_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_HASH_SIZE = 32


# --------------------------------------------------------------------------------------------
# Checkpoints


def _origin_problem(origin: object) -> str | None:
    if not isinstance(origin, str):
        return f"checkpoint origin must be a string, found {type(origin).__name__}"
    if not origin:
        return "checkpoint origin must not be empty"
    if "\n" in origin:
        return f"checkpoint origin must be a single line, found {excerpt(origin)}"
    return text_problem(origin, "checkpoint origin")


def _extension_problem(index: int, line: object) -> str | None:
    if not isinstance(line, str):
        return f"checkpoint extension line {index} must be a string, found {type(line).__name__}"
    if not line:
        return f"checkpoint extension line {index} must not be empty"
    if "\n" in line:
        return f"checkpoint extension line {index} must be a single line, found {excerpt(line)}"
    return text_problem(line, f"checkpoint extension line {index}")


@dataclass(frozen=True)
class Checkpoint:
    """A transparency-log checkpoint: the note text of c2sp.org/tlog-checkpoint.

    ``origin`` identifies the log, ``tree_size`` is the number of leaves, ``root_hash`` the
    32-byte RFC 6962/9162 Merkle tree root, and ``extensions`` optional extra non-empty lines
    (opaque; the spec does not recommend them). Invalid field values raise :class:`ValueError`.
    """

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _origin_problem(self.origin)
        if problem:
            raise ValueError(problem)
        size = self.tree_size
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"checkpoint tree size must be an int, found {type(size).__name__}")
        if not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"checkpoint tree size must be in [0, 2**64 - 1], found {size}")
        root = self.root_hash
        if not isinstance(root, bytes) or len(root) != _HASH_SIZE:
            found = f"{len(root)} bytes" if isinstance(root, bytes) else type(root).__name__
            raise ValueError(f"checkpoint root hash must be 32 bytes, found {found}")
        if isinstance(self.extensions, list):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        if not isinstance(self.extensions, tuple):
            raise ValueError(
                f"checkpoint extensions must be a tuple of lines, "
                f"found {type(self.extensions).__name__}"
            )
        for i, line in enumerate(self.extensions):
            problem = _extension_problem(i, line)
            if problem:
                raise ValueError(problem)

    def body(self) -> bytes:
        """The note text (c2sp.org/tlog-checkpoint), UTF-8 encoded.

        ``origin``, the decimal tree size, the base64 root hash and each extension line, every
        one followed by a newline.
        """
        lines = [self.origin, str(self.tree_size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse_body(cls, body: bytes | str) -> Checkpoint:
        """Parse a checkpoint note text strictly (c2sp.org/tlog-checkpoint).

        Expects valid UTF-8 without control characters other than newline, ending in a
        newline, with at least three non-empty lines: the origin, the tree size in ASCII
        decimal without leading zeros (at most 2**64 - 1), the canonical standard base64 of a
        32-byte root hash, then any non-empty extension lines. Raises
        :class:`~otaudit.errors.VerificationError` saying what was expected and what was found.
        """
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise VerificationError(
                    f"checkpoint body must be valid UTF-8, found invalid bytes at offset "
                    f"{exc.start}"
                ) from None
        elif not isinstance(body, str):
            raise VerificationError(
                f"checkpoint body must be str or bytes, found {type(body).__name__}"
            )
        problem = text_problem(body, "checkpoint body")
        if problem:
            raise VerificationError(problem)
        if not body.endswith("\n"):
            raise VerificationError(
                f"checkpoint body must end with a newline, found {excerpt(body[-20:])} at the end"
            )
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError(
                "checkpoint body must have at least 3 lines (origin, tree size, root hash), "
                f"found {len(lines)}"
            )
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise VerificationError("checkpoint origin (line 1) must not be empty")
        if not _TREE_SIZE_RE.fullmatch(size_text):
            raise VerificationError(
                "checkpoint tree size (line 2) must be ASCII decimal without leading zeros, "
                f"found {excerpt(size_text)}"
            )
        tree_size = int(size_text)
        if tree_size > MAX_TREE_SIZE:
            raise VerificationError(
                f"checkpoint tree size (line 2) must be at most 2**64 - 1, found {size_text}"
            )
        root = b64decode_strict(root_text)
        if root is None:
            raise VerificationError(
                "checkpoint root hash (line 3) must be canonical standard base64, "
                f"found {excerpt(root_text)}"
            )
        if len(root) != _HASH_SIZE:
            raise VerificationError(
                f"checkpoint root hash (line 3) must be 32 bytes, found {len(root)} bytes"
            )
        for i, line in enumerate(extensions):
            if not line:
                raise VerificationError(
                    f"checkpoint extension line {i + 1} (line {i + 4}) must not be empty"
                )
        return cls(origin, tree_size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, key: SigningKey) -> str:
    """Sign a checkpoint; return the signed note text (c2sp.org/tlog-checkpoint).

    That is ``cp.body()``, a blank line and ``— <key name> <base64(key ID || signature)>``
    with a final newline. The spec recommends that the key name match the origin; it is not
    enforced.
    """
    return sign_note(cp.body(), key)


def open_checkpoint(note: str | bytes, key: VerifierKey, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint with ``key`` and parse it (c2sp.org/tlog-checkpoint).

    The signature is checked first (see :func:`open_note`: signatures from other keys are
    ignored, at least one valid signature by ``key`` is required, and any failing signature by
    ``key`` is fatal), then the body is parsed with :meth:`Checkpoint.parse_body`, then, if
    ``origin`` is given, the checkpoint's origin must equal it. Raises
    :class:`~otaudit.errors.VerificationError` on any failure or malformation.
    """
    text = open_note(note, key)
    cp = Checkpoint.parse_body(text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(
            f"checkpoint origin must be {excerpt(origin)}, found {excerpt(cp.origin)}"
        )
    return cp
