"""Compressed record bytes in a SQLite ledger: zstd frames and the ledger's dictionary.

A record row keeps its stored bytes (the sealed bytes, with the resource cut out when
it is kept once) either as they are or as one standard zstd frame (``core/src/codec.rs``;
``docs/record-format.md``, "How a record is stored"). Records are small and alike, so a
frame compressed with a dictionary trained on the ledger's own records is several times
smaller than one without. The first :data:`TRAIN_AFTER` records are compressed without
one; then the writer trains a dictionary on the latest records, keeps it in the
append-only ``dictionaries`` table under its zstd ID (the ID each frame's header names)
and compresses with it from then on. A reader fetches a dictionary the first time a
frame names it. Nothing here is trusted: ``verify`` recomputes every leaf hash from the
decompressed bytes, so an altered frame or dictionary shows as an altered record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from otaudit import _core

#: Records appended before the first dictionary is trained.
TRAIN_AFTER: Final = 2_000
#: The latest records a dictionary is trained on.
TRAIN_SAMPLES: Final = 2_000
#: The size of a trained dictionary.
DICTIONARY_BYTES: Final = 32 * 1024
#: zstd's level: the fastest levels already find what a dictionary offers.
LEVEL: Final = 3
#: The most bytes a frame may declare (a sealed record is far smaller: its request's
#: limits bound it); a frame declaring more is reported, never allocated.
MAX_RECORD_BYTES: Final = 64 * 1024 * 1024
_RETRY_AFTER: Final = 2_000


class StoredBytes:
    """Encodes the stored bytes of new rows and decodes those of rows read back.

    ``fetch`` returns a dictionary's bytes by ID (None: the ledger has none by that ID).
    """

    def __init__(self, fetch: Callable[[int], bytes | None]) -> None:
        self._fetch = fetch
        self._codec = _core.Codec(LEVEL)
        self._missing: set[int] = set()
        self._next_training = TRAIN_AFTER

    @property
    def dictionary(self) -> int:
        """The dictionary new rows are compressed with (0: none yet)."""
        return self._codec.encoding_dictionary

    def use(self, dictionary_id: int, body: bytes) -> bool:
        """Compress with this dictionary from now on (False: the bytes are not it)."""
        return self._codec.add_dictionary(dictionary_id, body, True)

    def wants_dictionary(self, next_seq: int) -> bool:
        """Whether the writer should train a dictionary before appending at ``next_seq``."""
        return self.dictionary == 0 and next_seq >= self._next_training

    def train(self, samples: Sequence[bytes], next_seq: int) -> tuple[int, bytes] | None:
        """A dictionary trained on ``samples`` (its ID and bytes), now used to compress;
        None when zstd finds nothing to train on yet (tried again later)."""
        self._next_training = next_seq + _RETRY_AFTER
        try:
            body = _core.train_dictionary(list(samples), DICTIONARY_BYTES)
        except ValueError:
            return None
        dictionary_id = _core.dictionary_id(body)
        if dictionary_id is None or not self.use(dictionary_id, body):
            return None
        return dictionary_id, body

    @property
    def encoder(self) -> _core.Codec:
        """The codec new rows are compressed with (the writer compresses as it binds)."""
        return self._codec

    def decode(self, stored: bytes) -> bytes:
        """The bytes a row keeps, decompressed if they are a frame. A frame that cannot be
        read (altered, or naming a dictionary the ledger does not hold) comes back as it
        is, for ``verify`` to report as an altered record."""
        if not _core.is_frame(stored):
            return stored
        wanted = _core.frame_dictionary(stored)
        if wanted and not self._codec.has_dictionary(wanted) and wanted not in self._missing:
            body = self._fetch(wanted)
            if body is None or not self._codec.add_dictionary(wanted, body, False):
                self._missing.add(wanted)
        try:
            return self._codec.decode(stored, MAX_RECORD_BYTES)
        except ValueError:
            return stored

    def why_unreadable(self, stored: bytes) -> str | None:
        """Why a frame cannot be read (None: it can, or it is not a frame)."""
        if not _core.is_frame(stored):
            return None
        try:
            self._codec.decode(stored, MAX_RECORD_BYTES)
        except ValueError as exc:
            return str(exc)
        return None


def created_at() -> str:
    """The time a dictionary is kept, as the ledger writes times (UTC, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
