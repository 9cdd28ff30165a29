"""Canonical bytes: the fast path agrees with the RFC 8785 reference implementation."""

from __future__ import annotations

from typing import TypeAlias

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from otaudit.canonical import canonical_bytes

#: The JSON trees the strategy below draws.
Json: TypeAlias = bool | int | str | list["Json"] | dict[str, "Json"] | None

keys = st.text(max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400)
@given(trees)
def test_fast_path_matches_rfc8785(tree: Json) -> None:
    assert canonical_bytes(tree) == rfc8785.dumps(tree)


def test_key_order_is_utf16_code_units() -> None:
    # U+1F600 (a surrogate pair in UTF-16) sorts before U+FB01 in RFC 8785,
    # although its code point is larger.
    tree = {"\ufb01": 1, "\U0001f600": 2}
    assert canonical_bytes(tree) == '{"\U0001f600":2,"\ufb01":1}'.encode()


def test_escaping_matches_json_stringify() -> None:
    assert (
        canonical_bytes({"k": '\x00\x1f"\\/\u2028é'})
        == b'{"k":"\\u0000\\u001f\\"\\\\/\xe2\x80\xa8\xc3\xa9"}'
    )
