"""MemoryLimiter with a hand-driven clock, and the quota header formatting."""

from __future__ import annotations

import pytest

from gateway.admission.limiter import MemoryLimiter, Quota, TenantLimits, format_reset
from gateway.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> MemoryLimiter:
    return MemoryLimiter(clock=clock)


async def test_requests_bucket_refills_one_per_interval(
    limiter: MemoryLimiter, clock: Clock
) -> None:
    t = TenantLimits("a", requests_per_minute=6, tokens_per_minute=10_000)  # one per 10 s
    for _ in range(6):
        await limiter.admit(t, 1)
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 1)
    assert info.value.bucket == "requests"
    assert info.value.retry_after == pytest.approx(10.0)
    assert info.value.headers["Retry-After"] == "10"
    assert info.value.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 9.9
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 1)
    assert info.value.retry_after == pytest.approx(0.1)
    assert info.value.headers["Retry-After"] == "1"  # whole seconds, rounded up
    clock.now += 0.1
    admission = await limiter.admit(t, 1)
    assert admission.quota.remaining_requests == 0
    assert admission.quota.reset_requests == pytest.approx(60.0)


async def test_tokens_bucket_refuses_without_taking_a_request(
    limiter: MemoryLimiter, clock: Clock
) -> None:
    t = TenantLimits("a", requests_per_minute=10, tokens_per_minute=600)  # 10 tokens/s
    a = await limiter.admit(t, 500)
    assert (a.reserved_tokens, a.quota.remaining_tokens, a.quota.remaining_requests) == (500, 100, 9)
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 200)
    assert info.value.bucket == "tokens"
    assert info.value.retry_after == pytest.approx(10.0)
    assert info.value.status == 429
    a = await limiter.admit(t, 50)
    assert a.quota.remaining_requests == 8  # the refused call took no request
    clock.now += 15
    a = await limiter.admit(t, 200)
    assert a.quota.remaining_tokens == 0


async def test_retry_after_covers_both_buckets(limiter: MemoryLimiter, clock: Clock) -> None:
    t = TenantLimits("a", requests_per_minute=1, tokens_per_minute=60)
    await limiter.admit(t, 60)
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 60)
    assert info.value.bucket == "requests"  # named first when both are short
    assert info.value.retry_after == pytest.approx(60.0)
    clock.now += 60
    await limiter.admit(t, 60)


async def test_huge_estimate_is_clamped_to_capacity(limiter: MemoryLimiter) -> None:
    t = TenantLimits("a", requests_per_minute=10, tokens_per_minute=1000)
    a = await limiter.admit(t, 10**9)
    assert a.reserved_tokens == 1000
    assert a.quota.remaining_tokens == 0


async def test_settle_refunds_and_charges_into_debt(limiter: MemoryLimiter, clock: Clock) -> None:
    t = TenantLimits("a", requests_per_minute=100, tokens_per_minute=600)  # 10 tokens/s
    a = await limiter.admit(t, 400)
    await limiter.settle(t, a.reserved_tokens, used=100)  # refund 300
    a = await limiter.admit(t, 0)
    assert a.quota.remaining_tokens == 500
    await limiter.settle(t, reserved=0, used=1100)  # charge 1100: 600 in debt
    with pytest.raises(RateLimited) as info:
        await limiter.admit(t, 0)
    assert info.value.bucket == "tokens"
    assert info.value.retry_after == pytest.approx(60.0)
    assert info.value.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.now += 60
    await limiter.admit(t, 0)


async def test_tenants_are_independent(limiter: MemoryLimiter) -> None:
    a = TenantLimits("a", requests_per_minute=1, tokens_per_minute=100)
    b = TenantLimits("b", requests_per_minute=1, tokens_per_minute=100)
    await limiter.admit(a, 1)
    with pytest.raises(RateLimited):
        await limiter.admit(a, 1)
    await limiter.admit(b, 1)


async def test_changed_limits_take_effect(limiter: MemoryLimiter) -> None:
    await limiter.admit(TenantLimits("a", 1, 100), 1)
    await limiter.admit(TenantLimits("a", 2, 100), 1)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TenantLimits("a", requests_per_minute=0, tokens_per_minute=1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-1, "0s"), (0.0001, "1ms"), (0.02, "20ms"), (0.5, "500ms"), (1, "1s"),
     (1.5, "1.5s"), (12.3456, "12.346s"), (59.9999, "1m0s"), (60, "1m0s"), (360, "6m0s"),
     (75.25, "1m15.25s")],
)
def test_reset_is_formatted_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_quota_headers() -> None:
    q = Quota(600, 599, 0.1, 200_000, 199_000, 0.3)
    assert q.headers() == {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": "100ms",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199000",
        "x-ratelimit-reset-tokens": "300ms",
    }


@pytest.mark.parametrize(("requests", "tokens", "back_requests", "back_tokens"), [
    (3.0, 400.0, 1, 100),   # plenty left
    (-2.5, -150.0, 1, 50),  # in debt: remaining shows 0, the resets still know the levels
    (9.5, 590.0, 1, 100),   # a refund never fills a bucket past its size
])
def test_a_refunded_quota_is_the_quota_of_the_refilled_levels(
    requests: float, tokens: float, back_requests: int, back_tokens: int,
) -> None:
    t = TenantLimits("a", requests_per_minute=10, tokens_per_minute=600)
    refunded = Quota.from_levels(t, requests, tokens).refunded(t, back_requests, back_tokens)
    expected = Quota.from_levels(t, min(10, requests + back_requests), min(600, tokens + back_tokens))
    assert (refunded.remaining_requests, refunded.remaining_tokens) == (
        expected.remaining_requests, expected.remaining_tokens)
    assert refunded.reset_requests == pytest.approx(expected.reset_requests)
    assert refunded.reset_tokens == pytest.approx(expected.reset_tokens)
