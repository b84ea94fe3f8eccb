"""parse_retry_after and backoff_delay: pure, value by value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.retry import backoff_delay, parse_retry_after

NOW = datetime(2025, 3, 7, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("0", 0.0),
    ("3", 3.0),
    (" 7 ", 7.0),
    ("1.5", 1.5),
    (".25", 0.25),
    ("2.", 2.0),
    ("+4", 4.0),
    ("-1", 0.0),          # negative: now
    ("-0.5", 0.0),
    ("120", 30.0),        # capped
    ("30", 30.0),
    ("99999999999999999999", 30.0),
])
def test_delay_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW, cap=30) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("Fri, 07 Mar 2025 12:00:10 GMT", 10.0),         # IMF-fixdate
    ("Friday, 07-Mar-25 12:00:05 GMT", 5.0),         # obsolete RFC 850
    ("Fri Mar  7 12:00:03 2025", 3.0),               # obsolete asctime (no zone: UTC)
    ("Fri, 07 Mar 2025 13:00:00 +0100", 0.0),        # = 12:00:00 UTC: now
    ("Fri, 07 Mar 2025 11:59:00 GMT", 0.0),          # past: now
    ("Fri, 07 Mar 2025 12:01:00 GMT", 30.0),         # 60 s, capped at 30
    ("Fri, 07 Mar 2025 12:00:00 -0000", 0.0),
])
def test_http_dates(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW, cap=30) == expected


@pytest.mark.parametrize("value", [
    None, "", "   ", "soon", "1e3", "inf", "nan", "-inf", "0x10", "1,5", "5 s", "12:00",
    "Fri, 32 Mar 2025 12:00:00 GMT", "Fri, 07 Foo 2025 12:00:00 GMT",
])
def test_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW, cap=30) is None


def test_naive_now_is_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Fri, 07 Mar 2025 12:00:04 GMT", naive, cap=30) == 4.0


@given(st.integers(min_value=-10_000, max_value=10_000), st.floats(min_value=0, max_value=1000))
def test_any_date_lands_in_zero_to_cap(offset: int, cap: float) -> None:
    value = format_datetime(NOW + timedelta(seconds=offset), usegmt=True)
    assert parse_retry_after(value, NOW, cap) == min(max(offset, 0), cap)


@given(st.text(max_size=40))
def test_never_raises_and_stays_in_range(value: str) -> None:
    result = parse_retry_after(value, NOW, cap=60)
    assert result is None or 0.0 <= result <= 60.0


@pytest.mark.parametrize(("attempt", "jitter", "expected"), [
    (0, 0.0, 0.25),   # ceiling 0.5, half of it
    (0, 1.0, 0.5),
    (1, 1.0, 1.0),
    (2, 0.5, 1.5),    # ceiling 2.0 * 0.75
    (3, 1.0, 4.0),
    (4, 1.0, 5.0),    # 8.0 capped at 5
    (4, 0.0, 2.5),
    (10_000, 1.0, 5.0),  # no overflow however many attempts
])
def test_backoff_doubles_to_the_cap_with_jitter_in_half_to_whole(attempt: int, jitter: float, expected: float) -> None:
    assert backoff_delay(attempt, base=0.5, cap=5.0, jitter=jitter) == expected


@given(st.integers(min_value=0, max_value=5000), st.floats(min_value=0, max_value=1))
def test_backoff_is_within_half_and_whole_ceiling(attempt: int, jitter: float) -> None:
    delay = backoff_delay(attempt, base=0.1, cap=8.0, jitter=jitter)
    ceiling = min(8.0, 0.1 * 2.0 ** min(attempt, 100))
    assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(("attempt", "jitter"), [(-1, 0.5), (0, -0.1), (0, 1.1)])
def test_backoff_refuses_bad_arguments(attempt: int, jitter: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, base=0.5, cap=5.0, jitter=jitter)
