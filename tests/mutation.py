"""Byte-level mutations for the fuzz targets: overwrite, truncate, insert, delete."""

from __future__ import annotations

from hypothesis import strategies as st

#: Up to eight edits: (kind, where, byte value); kind 0 overwrites, 1 truncates,
#: 2 inserts, 3 deletes; where is taken modulo the length.
EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                 min_size=1, max_size=8)  # fmt: skip


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """``data`` with ``edits`` applied in order (see ``EDITS``)."""
    out = bytearray(data)
    for kind, at, value in edits:
        if not out:
            break
        at %= len(out)
        if kind == 0:
            out[at] = value
        elif kind == 1:
            del out[at:]
        elif kind == 2:
            out.insert(at, value)
        else:
            del out[at]
    return bytes(out)
