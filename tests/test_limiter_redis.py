"""RedisLimiter against a real Redis: same semantics as memory, shared across replicas, failures.

The semantic tests run over both backends on the real clock; limits are chosen so the refill
during a test (well under a second) cannot change a whole-token answer.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import redis.asyncio

from gateway.admission.limiter import Limiter, MemoryLimiter, TenantLimits
from gateway.admission.redis import RedisLimiter
from gateway.errors import RateLimited, Shed

if TYPE_CHECKING:  # the fixtures come from the tests.conftest_redis plugin
    from tests.conftest_redis import RedisProcess

PREFIX = "gw:test:"
DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
#: These tests are about semantics, not speed: a generous timeout keeps a loaded CI machine
#: from turning a slow reply into "Redis unavailable".
TIMEOUT = 10.0


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    lim: Limiter
    if request.param == "memory":
        lim = MemoryLimiter()
    else:
        lim = RedisLimiter(
            request.getfixturevalue("redis_url"), fail_open=False, prefix=PREFIX, timeout=TIMEOUT
        )
    yield lim
    await lim.close()


# --- the same semantics on both backends ---------------------------------------------------

async def test_settle_with_refund_request_gives_back_the_request_and_all_tokens(
    limiter: Limiter,
) -> None:
    t = TenantLimits("refund", requests_per_minute=2, tokens_per_minute=1000)
    for _ in range(2):
        a = await limiter.admit(t, 400)
        await limiter.settle(t, a.reserved_tokens, 0, refund_request=True)  # shed: no upstream
    a = await limiter.admit(t, 400)
    assert (a.quota.remaining_requests, a.quota.remaining_tokens) == (1, 600)



async def test_admits_up_to_the_requests_limit_then_refuses(limiter: Limiter) -> None:
    t = TenantLimits("a", requests_per_minute=3, tokens_per_minute=1000)
    remaining = [(await limiter.admit(t, 10)).quota.remaining_requests for _ in range(3)]
    assert remaining == [2, 1, 0]
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 10)
    assert info.value.bucket == "requests"
    assert 19 < info.value.retry_after <= 20  # one request per 20 s
    assert info.value.headers["Retry-After"] == "20"
    assert info.value.headers["x-ratelimit-limit-requests"] == "3"


async def test_tokens_all_or_nothing_and_quota(limiter: Limiter) -> None:
    t = TenantLimits("a", requests_per_minute=100, tokens_per_minute=60)  # 1 token/s
    a = await limiter.admit(t, 40)
    assert a.reserved_tokens == 40
    q = a.quota
    assert (q.limit_requests, q.remaining_requests) == (100, 99)
    assert (q.limit_tokens, q.remaining_tokens) == (60, 20)
    assert 39 < q.reset_tokens <= 40
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 30)
    assert info.value.bucket == "tokens"
    assert 9 < info.value.retry_after <= 10
    a = await limiter.admit(t, 20)
    assert a.quota.remaining_requests == 98  # the refusal took no request


async def test_huge_estimate_is_clamped(limiter: Limiter) -> None:
    t = TenantLimits("a", requests_per_minute=10, tokens_per_minute=60)
    a = await limiter.admit(t, 10**9)
    assert (a.reserved_tokens, a.quota.remaining_tokens) == (60, 0)


async def test_settle_refunds_and_charges(limiter: Limiter) -> None:
    t = TenantLimits("a", requests_per_minute=100, tokens_per_minute=60)
    a = await limiter.admit(t, 50)
    await limiter.settle(t, a.reserved_tokens, used=20)  # refund 30
    assert (await limiter.admit(t, 0)).quota.remaining_tokens == 40
    await limiter.settle(t, reserved=0, used=100)  # charge 100: 60 in debt
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 0)
    assert info.value.bucket == "tokens"
    assert 59 < info.value.retry_after <= 60


# --- Redis only ------------------------------------------------------------------------------

@pytest.mark.redis
async def test_two_replicas_share_one_limit_exactly(redis_url: str) -> None:
    replicas = [RedisLimiter(redis_url, fail_open=False, prefix=PREFIX, timeout=TIMEOUT)
                for _ in range(2)]
    t = TenantLimits("shared", requests_per_minute=30, tokens_per_minute=10**6)

    async def one(i: int) -> bool:
        try:
            await replicas[i % 2].admit(t, 1)
        except RateLimited:
            return False
        return True

    started = time.monotonic()
    admitted = sum(await asyncio.gather(*(one(i) for i in range(200))))
    elapsed = time.monotonic() - started
    for r in replicas:
        await r.close()
    # 30 exactly; the bucket refills one request per 2 s, so a very slow machine may see more.
    assert 30 <= admitted <= 30 + int(elapsed / 2)


@pytest.mark.redis
async def test_keys_expire_once_full_again(
    redis_url: str, redis_client: redis.asyncio.Redis
) -> None:
    lim = RedisLimiter(redis_url, fail_open=False, prefix=PREFIX, timeout=TIMEOUT)
    t = TenantLimits("a", requests_per_minute=60, tokens_per_minute=600)
    await lim.admit(t, 300)  # the token bucket is full again in 30 s
    ttl = await redis_client.pttl(PREFIX + "a")
    assert 29_000 < ttl <= 31_000
    await lim.settle(t, reserved=300, used=900)  # 300 in debt: 90 s to full
    assert 89_000 < await redis_client.pttl(PREFIX + "a") <= 91_000
    await lim.close()


@pytest.mark.redis
async def test_reloads_the_script_after_script_flush(
    redis_url: str, redis_client: redis.asyncio.Redis
) -> None:
    lim = RedisLimiter(redis_url, fail_open=False, prefix=PREFIX, timeout=TIMEOUT)
    t = TenantLimits("a", requests_per_minute=60, tokens_per_minute=600)
    await lim.admit(t, 10)
    await lim.settle(t, 10, 5)
    await redis_client.script_flush()  # what a Redis restart does to the script cache
    assert (await lim.admit(t, 10)).quota.remaining_requests == 58
    await lim.settle(t, 10, 5)
    await lim.close()


async def test_dead_redis_fail_open_admits_and_reports() -> None:
    errors: list[Exception] = []
    lim = RedisLimiter(DEAD_URL, fail_open=True, prefix=PREFIX, on_error=errors.append)
    t = TenantLimits("a", requests_per_minute=60, tokens_per_minute=600)
    a = await lim.admit(t, 100)
    assert a.reserved_tokens == 0  # nothing was taken: settle charges the real usage later
    assert (a.quota.remaining_requests, a.quota.remaining_tokens) == (60, 600)
    await lim.settle(t, a.reserved_tokens, used=50)  # never raises
    assert len(errors) == 2
    await lim.close()


async def test_dead_redis_fail_closed_sheds() -> None:
    errors: list[Exception] = []
    lim = RedisLimiter(DEAD_URL, fail_open=False, prefix=PREFIX, on_error=errors.append)
    t = TenantLimits("a", requests_per_minute=60, tokens_per_minute=600)
    with pytest.raises(Shed) as info:
        await lim.admit(t, 100)
    assert info.value.reason == "limiter_unavailable"
    assert info.value.status == 503
    assert info.value.retry_after == 1
    await lim.settle(t, 100, used=50)  # never raises
    assert len(errors) == 2
    await lim.close()


@pytest.mark.redis
async def test_recovers_when_redis_comes_back(redis_process: RedisProcess) -> None:
    errors: list[Exception] = []
    # a dead server refuses connections at once: the generous timeout is never waited for
    open_ = RedisLimiter(redis_process.url, fail_open=True, on_error=errors.append, timeout=TIMEOUT)
    closed = RedisLimiter(
        redis_process.url, fail_open=False, on_error=errors.append, timeout=TIMEOUT
    )
    t = TenantLimits("a", requests_per_minute=10, tokens_per_minute=600)
    assert (await open_.admit(t, 10)).quota.remaining_requests == 9
    assert (await closed.admit(t, 10)).quota.remaining_requests == 8  # shared state

    await redis_process.kill()
    assert (await open_.admit(t, 10)).quota.remaining_requests == 10  # admitted, limits shown
    with pytest.raises(Shed):
        await closed.admit(t, 10)
    await open_.settle(t, 10, 0)
    assert len(errors) == 3

    await redis_process.start()  # same port, empty (no persistence), scripts not loaded
    assert (await closed.admit(t, 10)).quota.remaining_requests == 9
    assert (await open_.admit(t, 10)).quota.remaining_requests == 8
    await open_.settle(t, 10, 0)
    assert len(errors) == 3
    await open_.close()
    await closed.close()


@pytest.mark.redis
async def test_hung_redis_times_out_instead_of_stalling(redis_process: RedisProcess) -> None:
    errors: list[Exception] = []
    lim = RedisLimiter(redis_process.url, fail_open=False, on_error=errors.append)  # 0.5 s
    t = TenantLimits("a", requests_per_minute=10, tokens_per_minute=600)
    await lim.admit(t, 10)
    assert redis_process.proc is not None
    redis_process.proc.send_signal(signal.SIGSTOP)  # alive, accepting, never answering
    try:
        with pytest.raises(Shed):
            await lim.admit(t, 10)
        assert isinstance(errors[0], redis.TimeoutError)
    finally:
        redis_process.proc.send_signal(signal.SIGCONT)
    await lim.admit(t, 10)
    # The timed-out admission's cancel is retried until Redis answers: closing while it is
    # mid-command (a loaded machine) would cancel it and leave its connection unclosed.
    await lim.cancels_done()
    await lim.close()


async def test_keys_live_under_the_configured_prefix(
    redis_url: str, redis_client: redis.asyncio.Redis
) -> None:
    lim = RedisLimiter(redis_url, fail_open=False, prefix="tenant-x:rl:", timeout=TIMEOUT)
    await lim.admit(TenantLimits("a", requests_per_minute=5, tokens_per_minute=100), 10)
    await lim.close()
    keys = await redis_client.keys("*")  # the bucket, and the admission's marker (see _CANCEL)
    assert sorted(k for k in keys if not k.startswith(b"tenant-x:rl:adm:")) == [b"tenant-x:rl:a"]
    assert len(keys) == 2
