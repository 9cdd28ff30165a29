"""Reproducible audit samples, seeded by a signed checkpoint.

An auditor testing a control draws a sample from the population of records
(e.g. every access change in the period). To show the sample was not
cherry-picked, the draw is a pure function of things anyone can check:

- the population: the sequence numbers of the records that match the
  selection and lie inside the tree of a named signed checkpoint;
- the seed: that checkpoint's root hash, fixed when it was signed;
- the rule: order the population by ``SHA-256(root_hash || seq as 8 bytes,
  big-endian)`` and take the first ``n`` (every record once, no replacement).

Anyone holding the checkpoint and the population re-draws the same sample
with a few lines of any language; a different sample means a different
population or a different checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from otaudit.progress import Progress, counted


def sample_key(root_hash: bytes, seq: int) -> bytes:
    """The draw order of record ``seq`` under the seed ``root_hash``."""
    return hashlib.sha256(root_hash + seq.to_bytes(8, "big")).digest()


def population(seqs: Iterable[int], progress: Progress | None = None) -> list[int]:
    """The population read from ``seqs`` (the store's selection), as a list; ``progress``
    (optional) is called with the number read so far, ending at the population's size."""
    return list(counted(seqs, progress))


def draw(population: Iterable[int], root_hash: bytes, n: int) -> list[int]:
    """The ``n`` sequence numbers of ``population`` first in draw order, in draw order."""
    if n < 0:
        raise ValueError("a sample size cannot be negative")
    return sorted(population, key=lambda seq: sample_key(root_hash, seq))[:n]
