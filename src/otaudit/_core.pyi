"""The compiled core (``core/``, Rust): pure functions over bytes.

Each function here has a readable Python reference that tests hold it byte-for-byte
equal to (named in its docstring).
"""

from collections.abc import Sequence
from typing import Any

def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 leaf hash of ``data``; reference :func:`otaudit.merkle.leaf_hash`."""

def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash; reference :func:`otaudit.merkle.node_hash`.

    ValueError unless both are 32 bytes.
    """

class Codec:
    """zstd frames for stored record bytes, with at most one dictionary to compress with
    and any number to read with; bytes that are not a frame read back as they are."""

    def __init__(self, level: int = 3) -> None: ...
    def add_dictionary(self, id: int, dictionary: bytes, encode: bool) -> bool:
        """Hold ``dictionary`` (zstd ID ``id``) for reading; with ``encode``, compress with
        it. False when the bytes are not a zstd dictionary with that ID."""
    def has_dictionary(self, id: int) -> bool:
        """Whether the codec holds dictionary ``id``."""
    @property
    def encoding_dictionary(self) -> int:
        """The dictionary new frames are compressed with (0: none)."""
    def compress_many(self, items: list[bytes]) -> list[bytes]:
        """One zstd frame per item (in parallel, without the GIL)."""
    def decode(self, stored: bytes, max_bytes: int) -> bytes:
        """``stored`` itself unless it is a zstd frame, which is decompressed; ValueError
        says why a frame cannot be read (corrupt, over ``max_bytes``, unknown dictionary)."""

def is_frame(stored: bytes) -> bool:
    """Whether ``stored`` starts with the zstd magic number."""

def frame_dictionary(stored: bytes) -> int:
    """The dictionary ID a frame's header names (0: none)."""

def dictionary_id(dictionary: bytes) -> int | None:
    """The zstd ID a dictionary carries (None: not a zstd dictionary)."""

def train_dictionary(samples: list[bytes], max_bytes: int) -> bytes:
    """A zstd dictionary of at most ``max_bytes`` trained on ``samples``; ValueError when
    zstd cannot train on them (too few, too small)."""

def pg_copy_binary(rows: Sequence[tuple[Any, ...]], kinds: str) -> bytes:
    """PostgreSQL's binary COPY stream (signature, rows, trailer) of ``rows``: one value
    per letter of ``kinds`` (``q`` bigint, ``i`` integer, ``b`` bytea, ``t`` text, ``h``
    hstore given as the JSON text of a flat object of strings; None is NULL). TypeError
    for a value of the wrong type, ValueError for an hstore text that is not flat."""
