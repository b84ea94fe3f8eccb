"""Per-tenant rate limiting: the `Limiter` protocol, its quota numbers and the in-memory backend.

Each tenant has two token buckets: one of requests, one of LLM tokens, each holding a full
minute's limit and refilling continuously at limit/60 per second. An admission takes one
request and the estimated LLM tokens from both buckets or from neither; when the request
finishes, `settle` refunds what was reserved but not used, or charges what was used beyond;
a request that no upstream answered gets its request back too.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ..errors import RateLimited
from ..header_names import ANTHROPIC_RATELIMIT, RATELIMIT
from .bucket import TokenBucket, fits, seconds_until


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """What the limiter needs of a tenant: its name and its two per-minute limits."""

    name: str
    requests_per_minute: int
    tokens_per_minute: int

    def __post_init__(self) -> None:
        # A zero limit would make every wait infinite; the config rejects it, so do we.
        if self.requests_per_minute <= 0 or self.tokens_per_minute <= 0:
            raise ValueError(f"tenant {self.name!r}: per-minute limits must be positive")


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI sends `x-ratelimit-reset-*`: "0s", "20ms", "1.5s", "6m0s".

    Rounded UP to the millisecond, so a bucket that is not yet full never says "0s".
    """
    ms = max(0, math.ceil(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms // 1000}.{ms % 1000:03d}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


_RESET = re.compile(r"^(?:(\d+)m)?(?:(\d+(?:\.\d+)?)(ms|s))?$")


def parse_reset(text: str) -> float | None:
    """The seconds in a `format_reset` duration ("20ms", "1.5s", "6m0s"); None if it is not one."""
    match = _RESET.match(text)
    if match is None or not text:
        return None
    minutes, amount, unit = match.groups()
    seconds = float(amount or 0) / (1000 if unit == "ms" else 1)
    return int(minutes or 0) * 60 + seconds


def anthropic_headers(openai: Mapping[str, str], now: datetime) -> dict[str, str]:
    """Anthropic's `anthropic-ratelimit-*` headers from the same quota's `x-ratelimit-*` ones:
    limit and remaining as they are, reset as the RFC 3339 UTC time the bucket is full again."""
    out: dict[str, str] = {}
    for kind, (limit_name, remaining_name, reset_name) in RATELIMIT.items():
        limit = openai.get(limit_name)
        remaining = openai.get(remaining_name)
        reset = parse_reset(openai.get(reset_name, ""))
        if limit is None or remaining is None or reset is None:
            continue
        at = (now + timedelta(seconds=reset)).astimezone(UTC)
        to_limit, to_remaining, to_reset = ANTHROPIC_RATELIMIT[kind]
        out[to_limit] = limit
        out[to_remaining] = remaining
        out[to_reset] = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return out


@dataclass(frozen=True, slots=True)
class Quota:
    """The honest numbers behind the six `x-ratelimit-*` headers, after the decision.

    `remaining_*` is the whole tokens left (0 while in debt); `reset_*` is the seconds until
    that bucket is full again.
    """

    limit_requests: int
    remaining_requests: int
    reset_requests: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens: float

    @classmethod
    def from_levels(cls, tenant: TenantLimits, requests: float, tokens: float) -> Quota:
        """The quota of a tenant whose buckets hold `requests` and `tokens` right now."""
        rpm, tpm = tenant.requests_per_minute, tenant.tokens_per_minute
        return cls(
            rpm, max(0, math.floor(requests)), max(0.0, (rpm - requests) * 60 / rpm),
            tpm, max(0, math.floor(tokens)), max(0.0, (tpm - tokens) * 60 / tpm),
        )

    def refunded(self, tenant: TenantLimits, requests: int, tokens: int) -> Quota:
        """This quota once `requests` and `tokens` are given back (a refused request's refund):
        the buckets' levels are read back from the resets, which stay exact in debt."""
        rpm, tpm = self.limit_requests, self.limit_tokens
        level_requests = rpm - self.reset_requests * rpm / 60
        level_tokens = tpm - self.reset_tokens * tpm / 60
        return Quota.from_levels(tenant, min(rpm, level_requests + requests),
                                 min(tpm, level_tokens + tokens))

    @classmethod
    def full(cls, tenant: TenantLimits) -> Quota:
        return cls.from_levels(tenant, tenant.requests_per_minute, tenant.tokens_per_minute)

    def headers(self) -> dict[str, str]:
        requests, tokens = RATELIMIT["requests"], RATELIMIT["tokens"]
        return {
            requests[0]: str(self.limit_requests),
            requests[1]: str(self.remaining_requests),
            requests[2]: format_reset(self.reset_requests),
            tokens[0]: str(self.limit_tokens),
            tokens[1]: str(self.remaining_tokens),
            tokens[2]: format_reset(self.reset_tokens),
        }


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: its quota headers and the LLM tokens taken (settle them later).

    `took_request` is False when nothing was taken (a Redis limiter failing open), so there
    is no request to refund either.
    """

    quota: Quota
    reserved_tokens: int
    took_request: bool = True


def clamp_tokens(tenant: TenantLimits, tokens: int) -> int:
    """The tokens to reserve for an estimate of `tokens`.

    An estimate above the bucket capacity (a huge `max_tokens`) is clamped to the capacity:
    otherwise it could never be admitted and the tenant would be locked out for good. The
    real usage is charged at settle time anyway, so the clamp only delays the bill.
    """
    return min(max(tokens, 0), tenant.tokens_per_minute)


def refusal(tenant: TenantLimits, requests: float, tokens: float, want: int) -> RateLimited:
    """The 429 for a tenant whose buckets (levels `requests`, `tokens`) cannot give 1 + `want`.

    `kind` names the bucket that is short ("requests" first when both are); `retry_after` is
    when BOTH will have enough, so a client that waits that long is admitted.
    """
    rpm, tpm = tenant.requests_per_minute, tenant.tokens_per_minute
    wait_requests = seconds_until(requests, 1, rpm / 60)
    wait_tokens = seconds_until(tokens, want, tpm / 60)
    kind = "requests" if wait_requests > 0 else "tokens"
    retry_after = max(wait_requests, wait_tokens, 0.001)
    limit = rpm if kind == "requests" else tpm
    headers = Quota.from_levels(tenant, requests, tokens).headers()
    headers["Retry-After"] = str(math.ceil(retry_after))
    return RateLimited(
        f"rate limit reached for {kind} ({limit} per minute); "
        f"try again in {format_reset(retry_after)}",
        bucket=kind, retry_after=retry_after, headers=headers,
    )


class Limiter(Protocol):
    async def admit(self, tenant: TenantLimits, tokens: int) -> Admission:
        """Take 1 request and `tokens` (clamped to capacity) LLM tokens, or raise RateLimited."""
        ...

    async def settle(
        self, tenant: TenantLimits, reserved: int, used: int, *, refund_request: bool = False,
    ) -> None:
        """Refund `reserved - used` when positive, charge the difference when negative.

        `refund_request`: give the request back too (the gateway shed it, or it failed before
        any upstream answered: such a request is not charged at all).
        """
        ...

    async def peek(self, tenant: TenantLimits) -> Quota | None:
        """What the tenant's buckets hold now, taking nothing; None when the backend can't say."""
        ...

    async def close(self) -> None: ...


class _Buckets:
    __slots__ = ("limits", "requests", "tokens")

    def __init__(self, limits: TenantLimits, now: float) -> None:
        self.limits = limits
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        self.requests = TokenBucket(rpm, rpm / 60, now)
        self.tokens = TokenBucket(tpm, tpm / 60, now)


class MemoryLimiter:
    """The embedded backend: one process's buckets in a dict, tenant name -> buckets.

    No awaits inside `admit`, so each admission is atomic on the event loop. Buckets are
    created full on a tenant's first request, and rebuilt (full) if its limits change.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._tenants: dict[str, _Buckets] = {}

    def _buckets(self, tenant: TenantLimits, now: float) -> _Buckets:
        b = self._tenants.get(tenant.name)
        if b is None or (b.limits is not tenant and b.limits != tenant):
            b = self._tenants[tenant.name] = _Buckets(tenant, now)
        return b

    async def admit(self, tenant: TenantLimits, tokens: int) -> Admission:
        now = self._clock()
        b = self._buckets(tenant, now)
        want = clamp_tokens(tenant, tokens)
        requests, llm_tokens = b.requests.available(now), b.tokens.available(now)
        # all or nothing: check both buckets before taking from either
        # want <= capacity (clamped) and 1 <= rpm, so only the levels can refuse
        if not (fits(1, requests) and fits(want, llm_tokens)):
            raise refusal(tenant, requests, llm_tokens, want)
        b.requests.take(1)
        b.tokens.take(want)
        return Admission(Quota.from_levels(tenant, requests - 1, llm_tokens - want), want)

    async def settle(
        self, tenant: TenantLimits, reserved: int, used: int, *, refund_request: bool = False,
    ) -> None:
        if reserved == used and not refund_request:
            return
        now = self._clock()
        b = self._buckets(tenant, now)
        if reserved != used:
            b.tokens.adjust(reserved - used, now)
        if refund_request:
            b.requests.adjust(1, now)

    async def peek(self, tenant: TenantLimits) -> Quota | None:
        now = self._clock()
        b = self._tenants.get(tenant.name)
        if b is None or b.limits != tenant:  # first request, or new limits: full buckets
            return Quota.full(tenant)
        return Quota.from_levels(tenant, b.requests.available(now), b.tokens.available(now))

    async def close(self) -> None:
        self._tenants.clear()
