"""Times as users (and read API clients) write them: bounded, with short error messages."""

from __future__ import annotations

import pytest

from otaudit.timespec import parse_time

NOW = 1_764_288_000_000_000_000


def test_durations_and_times() -> None:
    assert parse_time("90d", NOW) == NOW - 90 * 86400 * 10**9
    assert parse_time("99999999999w", NOW) == 0  # before 1970: from the beginning
    assert parse_time("2026-01-01", NOW) == 1_767_225_600 * 10**9


@pytest.mark.parametrize("text", ["9" * 5000 + "d", "9" * 13 + "s", "x" * 5000])
def test_a_huge_value_is_refused_with_a_short_message(text: str) -> None:
    with pytest.raises(ValueError, match="is neither RFC 3339 nor a duration") as info:
        parse_time(text, NOW)
    assert len(str(info.value)) < 160
    if len(text) > 40:
        assert f"({len(text)} characters)" in str(info.value)
