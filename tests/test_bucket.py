"""TokenBucket, tick by tick with a hand-driven clock, plus hypothesis properties."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.admission.bucket import EPSILON, TokenBucket


def test_starts_full_and_refills_continuously() -> None:
    b = TokenBucket(60, 1.0, now=100.0)  # 60 per minute
    assert b.available(100.0) == 60
    assert b.try_take(60, 100.0)
    assert b.available(100.0) == 0
    assert b.available(100.5) == pytest.approx(0.5)  # no fixed window: half a token after 0.5 s
    assert b.available(130.0) == pytest.approx(30)
    assert b.available(500.0) == 60  # never above capacity


def test_take_is_all_or_nothing() -> None:
    b = TokenBucket(10, 1.0, now=0.0)
    assert b.try_take(7, 0.0)
    assert not b.try_take(4, 0.0)  # only 3 there: takes nothing
    assert b.available(0.0) == 3
    assert b.try_take(3, 0.0)
    assert not b.try_take(1, 0.0)


def test_tick_by_tick_one_token_per_tenth_of_a_second() -> None:
    b = TokenBucket(1, 10.0, now=0.0)
    assert b.try_take(1, 0.0)
    now = 0.0
    for _ in range(50):
        assert not b.try_take(1, now + 0.05)  # half a token: not yet
        now += 0.1
        assert b.try_take(1, now)  # float rounding of 0.1 * 10 must not refuse it


def test_wait_time_and_reset_time() -> None:
    b = TokenBucket(100, 2.0, now=0.0)
    assert b.wait_time(100, 0.0) == 0
    assert b.reset_time(0.0) == 0
    assert b.try_take(100, 0.0)
    assert b.wait_time(10, 0.0) == pytest.approx(5.0)
    assert b.wait_time(10, 4.0) == pytest.approx(1.0)
    assert b.wait_time(10, 5.0) == 0
    assert b.reset_time(5.0) == pytest.approx(45.0)
    assert b.wait_time(101, 5.0) == math.inf  # more than it can ever hold


def test_adjust_refunds_up_to_capacity_and_charges_into_debt() -> None:
    b = TokenBucket(100, 1.0, now=0.0)
    assert b.try_take(80, 0.0)
    b.adjust(+50, 0.0)
    assert b.available(0.0) == 70
    b.adjust(+50, 0.0)  # refund more than fits: capped
    assert b.available(0.0) == 100
    b.adjust(-150, 0.0)  # charge beyond what is there: debt
    assert b.available(0.0) == -50
    assert not b.try_take(0, 0.0)  # while in debt even nothing is refused
    assert b.wait_time(1, 0.0) == pytest.approx(51.0)  # repay the debt first
    assert b.reset_time(0.0) == pytest.approx(150.0)  # longer than a minute while in debt
    assert b.try_take(1, 51.0)


def test_clock_going_backwards_refills_nothing() -> None:
    b = TokenBucket(10, 1.0, now=10.0)
    assert b.try_take(10, 10.0)
    assert b.available(5.0) == 0
    assert b.available(11.0) == pytest.approx(1.0)  # measured from 10.0, not from 5.0


def test_rejects_non_positive_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0, now=0.0)
    with pytest.raises(ValueError):
        TokenBucket(10, 0.0, now=0.0)


# A run of operations: (seconds since the previous one, tokens to take, share to refund later).
_ops = st.lists(
    st.tuples(
        st.floats(0, 30, allow_nan=False),
        st.floats(0, 150, allow_nan=False),
        st.floats(0, 1, allow_nan=False),
    ),
    max_size=60,
)


@given(capacity=st.floats(1, 100), rate=st.floats(0.01, 50), ops=_ops)
def test_never_above_capacity_and_window_bound(
    capacity: float, rate: float, ops: list[tuple[float, float, float]]
) -> None:
    """Over any window, taken - refunded <= capacity + rate * window (no double bursts)."""
    b = TokenBucket(capacity, rate, now=0.0)
    now = 0.0
    events: list[tuple[float, float]] = []  # (time, net tokens consumed)
    for dt, amount, refund_share in ops:
        now += dt
        if b.try_take(amount, now):
            events.append((now, amount))
            refund = amount * refund_share
            b.adjust(refund, now)
            events.append((now, -refund))
        assert b.available(now) <= capacity
    for i, (start, _) in enumerate(events):
        net = 0.0
        for end, consumed in events[i:]:
            net += consumed
            assert net <= capacity + rate * (end - start) + EPSILON * len(events) + 1e-6


@given(rate=st.floats(0.01, 50), debt=st.floats(0, 1000))
def test_wait_time_is_when_the_take_first_succeeds(rate: float, debt: float) -> None:
    b = TokenBucket(60, rate, now=0.0)
    b.adjust(-60 - debt, 0.0)
    w = b.wait_time(1, 0.0)
    assert w > 0
    assert not copy.copy(b).try_take(1, w - 1e-6 / rate)
    assert b.try_take(1, w)
