"""The compiled core (``core/``, Rust): pure functions over bytes.

Each function here has a readable Python reference that tests hold it byte-for-byte
equal to (named in its docstring).
"""

def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 leaf hash of ``data``; reference :func:`otaudit.merkle.leaf_hash`."""

def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash; reference :func:`otaudit.merkle.node_hash`.

    ValueError unless both are 32 bytes.
    """
