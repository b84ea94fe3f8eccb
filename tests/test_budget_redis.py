"""RedisBudget against a real Redis: the memory semantics, shared accounts, exact under load, outages.

These tests use the machine's Redis (db 15, or GATEWAY_TEST_REDIS_URL) under a key prefix of
their own, delete only their own keys and never flush: other tests may share that Redis.
Destructive steps (SCRIPT FLUSH, a restart) run against a throwaway redis-server.
The injected clock stays on today's date: account keys expire after their period, so a key
written for a date long past would be gone at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio

from gateway.admission.budget import Budget, BudgetExceeded, MemoryBudget, Reservation, period_key
from gateway.admission.budget_redis import RedisBudget
from gateway.errors import Shed
from gateway.spend import Price, PriceTable, micros_to_usd, usd_to_micros
from tests.conftest_redis import TEST_REDIS_URL, shared_prefix

if TYPE_CHECKING:  # the fixture comes from the tests.conftest_redis plugin
    from tests.conftest_redis import RedisProcess

DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
TIMEOUT = 10.0  # semantics, not speed: a loaded machine must not turn slow into "unavailable"
DAY = 86400


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    # noon today (UTC): 12 hours to the day's reset, and the day's key expires in the future
    return Clock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared test Redis; its keys are deleted after."""
    yield from shared_prefix("budget")


@pytest.fixture
async def raw() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.from_url(TEST_REDIS_URL, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


def make_redis(prefix: str, clock: Clock, **kwargs: object) -> RedisBudget:
    return RedisBudget(TEST_REDIS_URL, fail_open=False, prefix=prefix, clock=clock, timeout=TIMEOUT,
                       **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def budget(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Budget]:
    b: Budget
    if request.param == "memory":
        b = MemoryBudget(clock)
    else:
        b = make_redis(request.getfixturevalue("prefix"), clock)
    yield b
    await b.close()


# --- the same semantics on both backends ---------------------------------------------------

async def test_reserves_while_they_fit_then_refuses_until_midnight(budget: Budget) -> None:
    held = [await budget.reserve("a", 1.00, "day", 0.25) for _ in range(4)]
    assert [r.remaining_usd for r in held] == [0.75, 0.5, 0.25, 0.0]
    with pytest.raises(BudgetExceeded) as info:
        await budget.reserve("a", 1.00, "day", 0.000001)
    assert info.value.retry_after == 12 * 3600
    assert info.value.headers == {"Retry-After": "43200"}
    assert (await budget.reserve("b", 1.00, "day", 1.00)).remaining_usd == 0.0


async def test_settle_books_the_real_cost_to_the_micro_dollar(budget: Budget) -> None:
    r = await budget.reserve("a", 2.00, "day", 0.40)
    assert await budget.remaining("a", 2.00, "day") == 1.6
    await budget.settle(r, 0.123457)
    assert await budget.spent("a", "day") == 0.123457
    assert await budget.remaining("a", 2.00, "day") == 1.876543
    assert (await budget.reserve("a", 2.00, "day", 1.876543)).remaining_micros == 0


async def test_overrun_and_total_period(budget: Budget, clock: Clock) -> None:
    await budget.settle(await budget.reserve("a", 1.00, "total", 0.10), 1.25)
    assert await budget.remaining("a", 1.00, "total") == -0.25
    clock.now += timedelta(days=3)
    with pytest.raises(BudgetExceeded) as info:
        await budget.reserve("a", 1.00, "total", 0.0)
    assert (info.value.retry_after, info.value.headers) == (None, {})


async def test_next_day_is_a_fresh_account(budget: Budget, clock: Clock) -> None:
    await budget.settle(await budget.reserve("a", 1.00, "day", 1.00), 1.00)
    clock.now += timedelta(days=1)
    assert await budget.remaining("a", 1.00, "day") == 1.0
    assert await budget.spent("a", "day") == 0.0


# --- Redis only ----------------------------------------------------------------------------

@pytest.mark.redis
async def test_account_key_fields_and_expiry(prefix: str, clock: Clock, raw: redis.asyncio.Redis) -> None:
    b = make_redis(prefix, clock, expire_margin_seconds=3600)
    r = await b.reserve("app-a", 10.0, "day", 0.5)
    key = f"{prefix}budget:app-a:{clock.now:%Y-%m-%d}"
    assert b.account_key("app-a", r.key) == key
    assert await raw.hgetall(key) == {b"reserved": b"500000"}
    midnight = clock.now.replace(hour=0) + timedelta(days=1)
    assert await raw.execute_command("EXPIRETIME", key) == int(midnight.timestamp()) + 3600
    await b.settle(r, 0.25)
    assert await raw.hgetall(key) == {b"reserved": b"0", b"spent": b"250000"}
    assert await raw.execute_command("EXPIRETIME", key) == int(midnight.timestamp()) + 3600
    month = await b.reserve("app-a", 10.0, "month", 0.5)
    next_month = (clock.now.replace(day=1, hour=0) + timedelta(days=32)).replace(day=1)
    assert await raw.execute_command("EXPIRETIME", b.account_key("app-a", month.key)) == (
        int(next_month.timestamp()) + 3600)
    total = await b.reserve("app-a", 10.0, "total", 0.5)
    assert await raw.ttl(b.account_key("app-a", total.key)) == -1  # never expires
    await b.close()


@pytest.mark.redis
async def test_a_request_that_crosses_midnight_is_billed_to_the_day_it_started(
    prefix: str, clock: Clock, raw: redis.asyncio.Redis,
) -> None:
    b = make_redis(prefix, clock)
    r = await b.reserve("a", 1.0, "day", 0.8)
    clock.now += timedelta(hours=12, seconds=1)   # past midnight
    fresh = await b.reserve("a", 1.0, "day", 0.9)  # today's account is empty
    await b.settle(r, 0.7)
    assert await raw.hgetall(b.account_key("a", r.key)) == {b"reserved": b"0", b"spent": b"700000"}
    assert await b.spent("a", "day") == 0.0
    await b.settle(fresh, 0.1)
    assert await b.spent("a", "day") == 0.1
    await b.close()


@pytest.mark.redis
async def test_settling_into_a_long_gone_period_leaves_no_key(
    prefix: str, clock: Clock, raw: redis.asyncio.Redis,
) -> None:
    b = make_redis(prefix, clock, expire_margin_seconds=0)
    stale = Reservation("a", "day", period_key("day", clock.now - timedelta(days=3)), 100, 0)
    await b.settle(stale, 0.5)
    assert await raw.exists(b.account_key("a", stale.key)) == 0
    await b.close()


@pytest.mark.redis
async def test_large_amounts_stay_exact(prefix: str, clock: Clock) -> None:
    b = make_redis(prefix, clock)
    r = await b.reserve("a", 5_000_000_000.0, "total", 4_000_000_000.000001)
    assert r.remaining_micros == 999_999_999_999_999
    await b.settle(r, 3_999_999_999.999999)
    assert usd_to_micros(await b.remaining("a", 5_000_000_000.0, "total")) == 1_000_000_000_000_001
    await b.close()


@pytest.mark.redis
async def test_forty_concurrent_reservations_on_two_replicas_admit_exactly_n(
    prefix: str, clock: Clock,
) -> None:
    """Two replicas (two pools) race 40 worst-case reservations for room for exactly 13."""
    prices = PriceTable({"gpt-4o-mini": Price(input=0.15, output=0.60)})
    worst = prices.worst_case_micros("gpt-4o-mini", 1000, 4096)
    assert worst == 2608
    n = 13
    budget_micros = n * worst + worst - 1  # one micro-dollar short of a 14th
    budget_usd = micros_to_usd(budget_micros)
    replicas = [make_redis(prefix, clock, max_connections=8) for _ in range(2)]

    async def attempt(i: int) -> Reservation | None:
        try:
            return await replicas[i % 2].reserve("t", budget_usd, "day", micros_to_usd(worst))
        except BudgetExceeded:
            return None

    results = await asyncio.gather(*(attempt(i) for i in range(40)))
    admitted = [r for r in results if r is not None]
    assert len(admitted) == n
    assert usd_to_micros(await replicas[0].remaining("t", budget_usd, "day")) == budget_micros - n * worst

    rng = random.Random(7)
    real = [prices.cost_micros("gpt-4o-mini", rng.randrange(1, 1001), rng.randrange(0, 4097))
            for _ in admitted]
    assert None not in real
    costs = [c for c in real if c is not None]
    await asyncio.gather(*(replicas[i % 2].settle(r, micros_to_usd(c))
                           for i, (r, c) in enumerate(zip(admitted, costs, strict=True))))
    for replica in replicas:
        assert usd_to_micros(await replica.remaining("t", budget_usd, "day")) == budget_micros - sum(costs)
        assert usd_to_micros(await replica.spent("t", "day")) == sum(costs)
        await replica.close()


def _dead(fail_open: bool, errors: list[Exception], clock: Clock) -> RedisBudget:
    return RedisBudget(DEAD_URL, fail_open=fail_open, on_error=errors.append, clock=clock)


async def test_dead_redis_fail_open_admits_unchecked_and_reports(clock: Clock) -> None:
    errors: list[Exception] = []
    b = _dead(True, errors, clock)
    r = await b.reserve("a", 1.0, "day", 0.5)
    assert (r.amount_micros, r.remaining_micros) == (0, None)
    await b.settle(r, 0.25)  # never raises
    with pytest.raises(Shed) as info:
        await b.remaining("a", 1.0, "day")
    assert info.value.reason == "budget_unavailable"
    assert len(errors) == 3
    await b.close()


async def test_dead_redis_fail_closed_sheds(clock: Clock) -> None:
    errors: list[Exception] = []
    b = _dead(False, errors, clock)
    with pytest.raises(Shed) as info:
        await b.reserve("a", 1.0, "day", 0.5)
    assert (info.value.status, info.value.reason, info.value.retry_after) == (503, "budget_unavailable", 1)
    with pytest.raises(Shed):
        await b.spent("a", "day")
    assert len(errors) == 2
    await b.close()


@pytest.mark.redis
async def test_script_flush_and_restart(redis_process: RedisProcess, clock: Clock) -> None:
    errors: list[Exception] = []
    make: Callable[[bool], RedisBudget] = lambda fail_open: RedisBudget(  # noqa: E731
        redis_process.url, fail_open=fail_open, on_error=errors.append, clock=clock, timeout=TIMEOUT)
    b, fallback = make(False), make(True)
    await b.settle(await b.reserve("a", 1.0, "day", 0.3), 0.1)
    admin = redis.asyncio.from_url(redis_process.url)
    await admin.script_flush()  # NOSCRIPT next: EVALSHA falls back to loading the script
    await admin.aclose()
    assert (await b.reserve("a", 1.0, "day", 0.3)).remaining_usd == 0.6

    await redis_process.kill()
    with pytest.raises(Shed):
        await b.reserve("a", 1.0, "day", 0.1)
    assert (await fallback.reserve("a", 1.0, "day", 0.1)).remaining_micros is None
    assert len(errors) == 2

    await redis_process.start()  # same port, empty: the account starts over, scripts unloaded
    assert (await b.reserve("a", 1.0, "day", 0.3)).remaining_usd == 0.7
    assert len(errors) == 2
    await b.close()
    await fallback.close()
