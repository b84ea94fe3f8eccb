"""The Redis backend of spend budgets: accounts shared by every replica, one script a call."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..errors import Shed
from ..spend import micros_to_usd, usd_to_micros
from .budget import (
    Period,
    Reservation,
    period_key,
    period_reset,
    refusal,
    to_micros,
    utcnow,
)
from .redis import REDIS_DOWN, connect

# KEYS[1] = the account hash. ARGV[1] = amount, ARGV[2] = budget (micro-dollars, integers),
# ARGV[3] = unix time the account expires at (0 = never). Returns {admitted 0/1, spent,
# reserved} after the decision. Lua numbers are doubles: whole micro-dollars are exact in them
# up to 2^53 (9 billion dollars). HINCRBY gets the integer strings Python sent, never a Lua
# number (Lua would print a large one as "1e+15").
_RESERVE = """
local s = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
local spent, reserved = tonumber(s[1]) or 0, tonumber(s[2]) or 0
if spent + reserved + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, spent, reserved}
end
reserved = redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return {1, spent, reserved}
"""

# ARGV[1] = minus the amount reserved, ARGV[2] = the real cost, ARGV[3] = as above. `reserved`
# never goes below zero: an account that expired or was lost meanwhile starts again at zero
# rather than handing out a credit. An EXPIREAT in the past (a period long over) deletes it.
_SETTLE = """
local reserved = redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1])
if reserved < 0 then
  redis.call('HSET', KEYS[1], 'reserved', 0)
end
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return 1
"""


class RedisBudget:
    """`Budget` over Redis, so every replica admits against the same accounts, exactly.

    Each account is a hash `{prefix}budget:{tenant}:{period_key}` with integer fields `spent`
    and `reserved`; reserving is ONE atomic Lua script (EVALSHA, reloaded on NOSCRIPT), and so
    is settling. Periods are decided by this replica's clock (`clock`), so replicas need
    clocks that agree (NTP): near midnight a request could otherwise count to either day. An
    account expires `expire_margin_seconds` after its period ends, long enough for the
    requests still in flight at the turn to settle into it.

    Redis unreachable: `fail_open=True` lets the request through unchecked (nothing
    reserved; settle still charges the real cost if Redis is back by then) and
    `fail_open=False` sheds with 503 `budget_unavailable`; either way `on_error(exc)` is
    called. `remaining` and `spent` have no honest answer then: they raise that Shed too.
    `settle` never raises: a settlement Redis refused or never saw calls `on_unsettled(tenant,
    micro-dollars not charged)` too, so the charge that was lost is said, never silent.
    """

    def __init__(
        self, url: str, *, fail_open: bool, prefix: str = "gw:",
        on_error: Callable[[Exception], None] | None = None,
        on_unsettled: Callable[[str, int], None] | None = None,
        clock: Callable[[], datetime] = utcnow, expire_margin_seconds: float = 86400.0,
        max_connections: int = 32, timeout: float = 0.5,
    ) -> None:
        self._fail_open = fail_open
        self._prefix = prefix
        self._on_error = on_error
        self._on_unsettled = on_unsettled
        self._clock = clock
        self._margin = timedelta(seconds=expire_margin_seconds)
        self._redis = connect(url, max_connections=max_connections, timeout=timeout)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    def account_key(self, tenant: str, key: str) -> str:
        """The Redis key of a tenant's account for the period `key` (see `period_key`)."""
        return f"{self._prefix}budget:{tenant}:{key}"

    def _expire_at(self, period: Period, key_time: datetime) -> int:
        reset = period_reset(period, key_time)
        return 0 if reset is None else math.ceil((reset + self._margin).timestamp())

    def _unavailable(self, exc: Exception) -> Shed:
        if self._on_error is not None:
            self._on_error(exc)
        return Shed("spend budget unavailable", reason="budget_unavailable", retry_after=1)

    async def reserve(self, tenant: str, budget_usd: float, period: Period, amount_usd: float) -> Reservation:
        amount, budget = to_micros(amount_usd, "amount_usd"), usd_to_micros(budget_usd)
        now = self._clock()
        key = period_key(period, now)
        try:
            ok, spent, reserved = await self._reserve(
                [self.account_key(tenant, key)],
                [str(amount), str(budget), str(self._expire_at(period, now))],
            )
        except REDIS_DOWN as exc:
            shed = self._unavailable(exc)
            if not self._fail_open:
                raise shed from exc
            return Reservation(tenant, period, key, 0, None)
        if not ok:
            raise refusal(tenant, budget, period, now)
        return Reservation(tenant, period, key, amount, budget - int(spent) - int(reserved))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        actual = to_micros(actual_usd, "actual_usd")
        if reservation.amount_micros == 0 and actual == 0:
            return  # nothing to release or charge: save the round trip
        # The reservation's own period decides the expiry: any instant in it gives the same reset.
        key_time = self._clock() if reservation.period == "total" else _period_start(reservation)
        expire_at = self._expire_at(reservation.period, key_time)
        try:
            await self._settle(
                [self.account_key(reservation.tenant, reservation.key)],
                [str(-reservation.amount_micros), str(actual), str(expire_at)],
            )
        except REDIS_DOWN as exc:
            self._unavailable(exc)
            if self._on_unsettled is not None:
                self._on_unsettled(reservation.tenant, actual)

    async def _read(self, tenant: str, period: Period) -> tuple[int, int]:
        key = period_key(period, self._clock())
        try:
            spent, reserved = await self._redis.hmget(self.account_key(tenant, key), ["spent", "reserved"])
        except REDIS_DOWN as exc:
            raise self._unavailable(exc) from exc
        return int(spent or 0), int(reserved or 0)

    async def remaining(self, tenant: str, budget_usd: float, period: Period) -> float:
        spent, reserved = await self._read(tenant, period)
        return micros_to_usd(usd_to_micros(budget_usd) - spent - reserved)

    async def spent(self, tenant: str, period: Period) -> float:
        return micros_to_usd((await self._read(tenant, period))[0])

    async def close(self) -> None:
        await self._redis.aclose()


def _period_start(reservation: Reservation) -> datetime:
    """The first instant of the day or month a reservation's `key` names."""
    if reservation.period == "day":
        return datetime.strptime(reservation.key, "%Y-%m-%d").replace(tzinfo=UTC)
    return datetime.strptime(reservation.key, "%Y-%m").replace(tzinfo=UTC)
