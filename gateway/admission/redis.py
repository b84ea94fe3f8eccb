"""The Redis backend of the limiter: tenant buckets shared by every replica, one script a call.

Each tenant is one hash `{prefix}{tenant}` with fields `r` (requests level), `t` (LLM tokens
level) and `ts` (Redis server time of the last update, in microseconds). An admission is ONE
atomic Lua script (EVALSHA) that refills both buckets from `TIME`, so replica clocks do not
matter, and takes from both or neither; settling is another. A missing key is a full bucket,
so keys expire once their buckets would be full again: idle tenants cost nothing. An
admission that times out on our side is cancelled by its id (`_CANCEL`), so a script that runs
when a stalled Redis wakes keeps nothing reserved.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..errors import Shed
from .bucket import EPSILON
from .limiter import Admission, Quota, TenantLimits, clamp_tokens, refusal

# Shared by both scripts. ARGV[1..2] = requests and tokens per minute. Levels are floats
# (Redis stores a Lua number with 17 significant digits, so nothing is lost between calls).
_REFILL = """
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('HMGET', KEYS[1], 'r', 't', 'ts')
local r, k = tonumber(s[1]) or rpm, tonumber(s[2]) or tpm
local dt = math.max(0, now - (tonumber(s[3]) or now))
r = math.min(rpm, r + dt * rpm / 60000000)
k = math.min(tpm, k + dt * tpm / 60000000)
"""

# Write the levels back; expire the key when both buckets would be full again (+1 s slack),
# since an absent key reads as full. Longer than a minute only while the tenant is in debt.
_STORE = """
redis.call('HSET', KEYS[1], 'r', r, 't', k, 'ts', now)
local full_ms = math.max((rpm - r) / rpm, (tpm - k) / tpm) * 60000
redis.call('PEXPIRE', KEYS[1], math.ceil(full_ms) + 1000)
"""

# ARGV[3] = LLM tokens wanted (already clamped to capacity), ARGV[4] = EPSILON.
# Returns {admitted 0/1, requests level, tokens level} after the decision; levels as strings
# because Redis truncates Lua numbers in replies to integers.
# KEYS[2] = this admission's marker, ARGV[5] = its lifetime in ms: the script records what it
# took there, and takes nothing when a cancel (below) got there first (returns {2, ...}).
_ADMIT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {2, '0', '0'} end
""" + _REFILL + """
local want, eps = tonumber(ARGV[3]), tonumber(ARGV[4])
if r + eps < 1 or k + eps < want then
  return {0, string.format('%.17g', r), string.format('%.17g', k)}
end
r, k = r - 1, k - want
""" + _STORE + """
redis.call('SET', KEYS[2], want, 'PX', ARGV[5])
return {1, string.format('%.17g', r), string.format('%.17g', k)}
"""

# The cancel of an admission whose reply never came (a client-side timeout: the script may
# have run, or may run when Redis wakes). Marker holds what it took: give it back. No marker:
# leave one ('x') so the admission, if it runs later, takes nothing. Idempotent.
_CANCEL = """
local m = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], 'x', 'PX', ARGV[3])
if m == false or m == 'x' then return 0 end
""" + _REFILL + """
r, k = math.min(rpm, r + 1), math.min(tpm, k + tonumber(m))
""" + _STORE + """
return 1
"""

# ARGV[3] = tokens delta: + refunds (capped at capacity), - charges (may go into debt);
# ARGV[4] = requests given back (0 or 1, capped at capacity).
_SETTLE = _REFILL + """
k = math.min(tpm, k + tonumber(ARGV[3]))
r = math.min(rpm, r + tonumber(ARGV[4]))
""" + _STORE + """
return 1
"""

# The levels now, refilled but not stored: a look that takes nothing.
_PEEK = _REFILL + """
return {string.format('%.17g', r), string.format('%.17g', k)}
"""

#: What "Redis is unreachable" looks like from here: redis-py's own errors and the OS ones
#: (ConnectionRefusedError, TimeoutError, ... are OSErrors).
REDIS_DOWN = (redis.RedisError, OSError)
#: the errors after which an admission script may still run (sent, reply not seen in time)
MAYBE_RAN = (redis.TimeoutError, TimeoutError)
#: how long an admission's marker lives: it only has to outlast the cancel that follows it
MARKER_MS = 10_000
#: a cancel is retried (Redis may still be stalled: even connecting waits on its handshake)
#: every CANCEL_RETRY_SECONDS for at most CANCEL_WINDOW_SECONDS, well inside MARKER_MS
CANCEL_RETRY_SECONDS = 0.25
CANCEL_WINDOW_SECONDS = 5.0


def connect(url: str, *, max_connections: int = 32, timeout: float = 0.5) -> redis.asyncio.Redis:
    """A client that owns its bounded pool (`aclose()` closes both), set up for admission calls.

    A bounded pool: a burst of admissions shares a few connections (one round trip each)
    instead of opening one per request; waiting for a free one is bounded too. Short timeouts
    so a dead Redis costs one failed attempt, not a stalled request. One immediate retry on a
    connection error only: it replaces a pooled connection that died with a restarted Redis
    (the command was never delivered). Never on a timeout, where the script may have run and
    a retry would take twice.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout,
        socket_connect_timeout=timeout, socket_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )
    return redis.asyncio.Redis.from_pool(pool)


class RedisLimiter:
    """`Limiter` over Redis, so several replicas share each tenant's limits exactly.

    Redis unreachable: `fail_open=True` admits (reserving nothing, with the configured limits as
    the quota) and `fail_open=False` sheds with 503 `limiter_unavailable`; either way
    `on_error(exc)` is called so the caller can count and log it. `settle` never raises.
    The pool reconnects by itself once Redis is back.

    `max_connections` bounds this replica's pool; `timeout` bounds connecting, each command
    and the wait for a free pooled connection: past it, Redis counts as unavailable.
    """

    def __init__(
        self, url: str, *, fail_open: bool, prefix: str = "gw:rl:",
        on_error: Callable[[Exception], None] | None = None,
        max_connections: int = 32, timeout: float = 0.5,
    ) -> None:
        self._fail_open = fail_open
        self._prefix = prefix
        self._on_error = on_error
        self._redis = connect(url, max_connections=max_connections, timeout=timeout)
        # register_script: EVALSHA, and on NOSCRIPT (Redis restarted, SCRIPT FLUSH) it loads
        # the script and retries once.
        self._admit = self._redis.register_script(_ADMIT)
        self._cancels: set[asyncio.Task[None]] = set()
        self._settle = self._redis.register_script(_SETTLE)
        self._peek = self._redis.register_script(_PEEK)

    def _failed(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)

    async def admit(self, tenant: TenantLimits, tokens: int) -> Admission:
        want = clamp_tokens(tenant, tokens)
        keys = [self._prefix + tenant.name, f"{self._prefix}adm:{uuid.uuid4().hex}"]
        try:
            ok, requests, llm_tokens = await self._admit(
                keys, [tenant.requests_per_minute, tenant.tokens_per_minute, want, EPSILON, MARKER_MS])
        except REDIS_DOWN as exc:
            self._failed(exc)
            if isinstance(exc, MAYBE_RAN):  # in the background: the request goes on now
                task = asyncio.create_task(self._cancel_admission(tenant, keys))
                self._cancels.add(task)
                task.add_done_callback(self._cancels.discard)
            if not self._fail_open:
                raise Shed("rate limiter unavailable", reason="limiter_unavailable",
                           retry_after=1) from exc
            # Nothing was reserved, so settle() later charges the real usage when it can.
            return Admission(Quota.full(tenant), 0, took_request=False)
        r, k = float(requests), float(llm_tokens)
        if ok != 1:  # 0 refused; 2 (cancelled first) is never replied to a caller
            raise refusal(tenant, r, k, want)
        return Admission(Quota.from_levels(tenant, r, k), want)

    async def _cancel_admission(self, tenant: TenantLimits, keys: list[str]) -> None:
        """Undo an admission that timed out on our side: Redis runs this after the admission
        (refund) or before it (the admission then takes nothing). Retried until Redis answers
        (bounded); a lost cancel leaves the admission's reservation to refill as before."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WINDOW_SECONDS
        while True:
            try:
                # EVAL, not EVALSHA: a stalled or restarted Redis may not hold the script.
                await self._redis.eval(
                    _CANCEL, 2, *keys, tenant.requests_per_minute, tenant.tokens_per_minute, MARKER_MS)
                return
            except REDIS_DOWN:
                if loop.time() >= deadline:
                    return
            await asyncio.sleep(CANCEL_RETRY_SECONDS)

    async def cancels_done(self) -> None:
        """Wait for the cancels of timed-out admissions still being sent (each is bounded)."""
        if self._cancels:
            await asyncio.wait(set(self._cancels))

    async def settle(
        self, tenant: TenantLimits, reserved: int, used: int, *, refund_request: bool = False,
    ) -> None:
        if reserved == used and not refund_request:
            return  # nothing to settle: save the round trip
        try:
            await self._settle(
                [self._prefix + tenant.name],
                [tenant.requests_per_minute, tenant.tokens_per_minute, reserved - used,
                 1 if refund_request else 0],
            )
        except REDIS_DOWN as exc:
            self._failed(exc)

    async def peek(self, tenant: TenantLimits) -> Quota | None:
        try:
            requests, llm_tokens = await self._peek(
                [self._prefix + tenant.name], [tenant.requests_per_minute, tenant.tokens_per_minute])
        except REDIS_DOWN as exc:
            self._failed(exc)
            return None
        return Quota.from_levels(tenant, float(requests), float(llm_tokens))

    async def close(self) -> None:
        for task in self._cancels:
            task.cancel()
        await self._redis.aclose()

