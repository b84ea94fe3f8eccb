"""Budget periods and MemoryBudget, step by step on an injected clock; the 429 it becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.admission.budget import (
    BudgetExceeded,
    MemoryBudget,
    Period,
    Reservation,
    period_key,
    period_reset,
)
from gateway.middleware import error_response
from gateway.routes import shape_for
from gateway.spend import micros_to_usd, usd_to_micros

EST = timezone(timedelta(hours=-5))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(("period", "now", "key"), [
    ("day", datetime(2025, 3, 7, 0, 0, tzinfo=UTC), "2025-03-07"),
    ("day", datetime(2025, 3, 7, 23, 59, 59, 999999, tzinfo=UTC), "2025-03-07"),
    ("day", datetime(2025, 3, 7, 20, 0, tzinfo=EST), "2025-03-08"),   # 01:00 UTC next day
    ("month", datetime(2025, 12, 31, 23, 59, tzinfo=UTC), "2025-12"),
    ("month", datetime(2025, 3, 31, 20, 0, tzinfo=EST), "2025-04"),
    ("total", datetime(2025, 3, 7, tzinfo=UTC), "total"),
])
def test_period_key_is_the_utc_day_or_month(period: Period, now: datetime, key: str) -> None:
    assert period_key(period, now) == key


@pytest.mark.parametrize(("period", "now", "reset"), [
    ("day", datetime(2025, 3, 7, 12, 30, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC)),
    ("day", datetime(2025, 3, 7, 0, 0, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC)),
    ("day", datetime(2025, 2, 28, 23, 0, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)),
    ("day", datetime(2025, 3, 7, 20, 0, tzinfo=EST), datetime(2025, 3, 9, tzinfo=UTC)),
    ("month", datetime(2025, 3, 7, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)),
    ("month", datetime(2025, 12, 31, 23, 59, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ("month", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    ("total", datetime(2025, 3, 7, tzinfo=UTC), None),
])
def test_period_reset_is_the_next_utc_boundary(period: Period, now: datetime, reset: datetime | None) -> None:
    assert period_reset(period, now) == reset


@given(st.datetimes(max_value=datetime(9998, 12, 31), timezones=st.just(UTC)),
       st.sampled_from(["day", "month"]))
def test_reset_is_after_now_and_starts_a_new_key(now: datetime, period: Period) -> None:
    reset = period_reset(period, now)
    assert reset is not None and reset > now
    assert period_key(period, reset) != period_key(period, now)
    assert period_key(period, reset - timedelta(microseconds=1)) == period_key(period, now)


def test_naive_datetimes_and_unknown_periods_are_refused() -> None:
    with pytest.raises(ValueError):
        period_key("day", datetime(2025, 3, 7))
    with pytest.raises(ValueError):
        period_reset("month", datetime(2025, 3, 7))
    with pytest.raises(ValueError):
        period_key("week", datetime(2025, 3, 7, tzinfo=UTC))  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 7, 18, 0, 0, tzinfo=UTC))


async def test_admits_while_worst_cases_fit_then_refuses_until_the_day_resets(clock: Clock) -> None:
    budget = MemoryBudget(clock)
    held = [await budget.reserve("a", 1.00, "day", 0.25) for _ in range(4)]
    assert [r.remaining_usd for r in held] == [0.75, 0.5, 0.25, 0.0]
    assert [r.amount_micros for r in held] == [250_000] * 4
    with pytest.raises(BudgetExceeded) as info:
        await budget.reserve("a", 1.00, "day", 0.000001)
    assert info.value.retry_after == 6 * 3600  # 18:00 -> midnight UTC
    assert info.value.headers == {"Retry-After": "21600"}
    assert info.value.tenant == "a"
    assert "$1.00 per day" in info.value.message
    assert "2025-03-08T00:00:00Z" in info.value.message
    # a zero-cost request (unpriced model) still fits a full budget
    assert (await budget.reserve("a", 1.00, "day", 0.0)).remaining_micros == 0
    # other tenants and other periods are separate accounts
    assert (await budget.reserve("b", 1.00, "day", 1.00)).remaining_usd == 0.0
    assert (await budget.reserve("a", 1.00, "month", 0.5)).remaining_usd == 0.5


async def test_settle_releases_the_reservation_and_charges_the_real_cost(clock: Clock) -> None:
    budget = MemoryBudget(clock)
    r = await budget.reserve("a", 1.00, "day", 0.40)
    assert await budget.remaining("a", 1.00, "day") == 0.6
    assert await budget.spent("a", "day") == 0.0
    await budget.settle(r, 0.013)
    assert await budget.spent("a", "day") == 0.013
    assert await budget.remaining("a", 1.00, "day") == 0.987
    # a settled reservation's room is free again: exactly what remains can be reserved
    last = await budget.reserve("a", 1.00, "day", 0.987)
    assert last.remaining_micros == 0


async def test_an_overrun_goes_negative_and_blocks_the_next_request(clock: Clock) -> None:
    budget = MemoryBudget(clock)
    r = await budget.reserve("a", 1.00, "day", 0.10)
    await budget.settle(r, 1.25)  # cost more than its worst case (e.g. an estimate was low)
    assert await budget.remaining("a", 1.00, "day") == -0.25
    with pytest.raises(BudgetExceeded):
        await budget.reserve("a", 1.00, "day", 0.0)


async def test_a_new_period_starts_from_zero_and_old_settles_stay_in_the_old_period(clock: Clock) -> None:
    budget = MemoryBudget(clock)
    old = await budget.reserve("a", 1.00, "day", 1.00)
    clock.now += timedelta(hours=6)  # midnight
    assert await budget.remaining("a", 1.00, "day") == 1.0
    fresh = await budget.reserve("a", 1.00, "day", 0.30)
    await budget.settle(old, 0.90)   # billed to yesterday, which is over
    assert await budget.spent("a", "day") == 0.0
    await budget.settle(fresh, 0.05)
    assert await budget.spent("a", "day") == 0.05


async def test_total_budget_never_resets_and_sends_no_retry_after(clock: Clock) -> None:
    budget = MemoryBudget(clock)
    await budget.settle(await budget.reserve("a", 5.0, "total", 5.0), 5.0)
    clock.now += timedelta(days=400)
    with pytest.raises(BudgetExceeded) as info:
        await budget.reserve("a", 5.0, "total", 0.01)
    assert info.value.retry_after is None
    assert info.value.headers == {}
    assert "$5.00 in total" in info.value.message


async def test_the_budget_may_change_between_calls(clock: Clock) -> None:
    budget = MemoryBudget(clock)
    await budget.settle(await budget.reserve("a", 1.0, "day", 0.6), 0.6)
    assert await budget.remaining("a", 2.0, "day") == 1.4  # raised by a reload
    with pytest.raises(BudgetExceeded):
        await budget.reserve("a", 0.5, "day", 0.0)         # lowered below what was spent


async def test_negative_amounts_are_refused(clock: Clock) -> None:
    budget = MemoryBudget(clock)
    with pytest.raises(ValueError):
        await budget.reserve("a", 1.0, "day", -0.01)
    r = await budget.reserve("a", 1.0, "day", 0.01)
    with pytest.raises(ValueError):
        await budget.settle(r, -0.01)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"error": {"message": "m", "type": "insufficient_quota",
                                        "code": "insufficient_quota"}}),
    ("/v1/messages", {"type": "error", "error": {"type": "rate_limit_error", "message": "m"}}),
])
def test_refusal_is_a_429_in_the_route_dialect(path: str, body: dict[str, object]) -> None:
    response = error_response(BudgetExceeded("m", tenant="a", retry_after=12.2), shape_for(path))
    assert response.status == 429
    assert response.headers["Retry-After"] == "13"
    assert response.body is not None
    assert orjson.loads(response.body) == body  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=400_000),
                          st.integers(min_value=0, max_value=400_000)), max_size=40))
async def test_accounts_never_admit_past_the_budget(steps: list[tuple[bool, int, int]]) -> None:
    """Random reserves (worst case) and settles (real cost <= worst case) against a $1 budget:
    what is held and spent never passes the budget, and the books add up to the micro-dollar."""
    budget = MemoryBudget(Clock(datetime(2025, 3, 7, tzinfo=UTC)))
    held: list[Reservation] = []
    spent = 0
    for settle_one, worst, real in steps:
        if settle_one and held:
            r = held.pop(0)
            cost = min(real, r.amount_micros)
            await budget.settle(r, micros_to_usd(cost))
            spent += cost
        else:
            try:
                held.append(await budget.reserve("t", 1.0, "day", micros_to_usd(worst)))
            except BudgetExceeded:
                assert spent + sum(r.amount_micros for r in held) + worst > 1_000_000
        outstanding = sum(r.amount_micros for r in held)
        assert spent + outstanding <= 1_000_000
        assert usd_to_micros(await budget.spent("t", "day")) == spent
        assert usd_to_micros(await budget.remaining("t", 1.0, "day")) == 1_000_000 - spent - outstanding
