"""The core's RFC 9162 hashes are byte for byte those of the Python reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otaudit import _core, merkle


@given(st.binary(max_size=4096))
def test_leaf_hash_matches_the_reference(data: bytes) -> None:
    assert _core.leaf_hash(data) == merkle.leaf_hash(data)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_node_hash_matches_the_reference(left: bytes, right: bytes) -> None:
    assert _core.node_hash(left, right) == merkle.node_hash(left, right)


@pytest.mark.parametrize("size", [0, 31, 33])
def test_node_hash_refuses_a_child_of_the_wrong_length(size: int) -> None:
    with pytest.raises(ValueError, match=f"left: expected 32 bytes, got {size}"):
        _core.node_hash(bytes(size), bytes(32))
