"""Micro-benchmark of one admission (admit + settle) on the memory and Redis limiters.

Run: `python bench/admission.py [--redis-url URL] [--memory N] [--redis N]` (loopback only).
Round trips are counted from the server's `INFO commandstats` before and after (less the
commands the scripts run inside Redis), so other clients of the same Redis at the same time
inflate them: point it at an idle one.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis.asyncio

from gateway.admission.limiter import Limiter, MemoryLimiter, TenantLimits
from gateway.admission.redis import RedisLimiter

# Limits no run can exhaust: the benchmark measures the bookkeeping, never a refusal.
TENANT = TenantLimits("bench", requests_per_minute=10**9, tokens_per_minute=10**12)


# commandstats also counts the commands a script runs inside Redis: those are not round trips.
_NOT_ROUND_TRIPS = {"cmdstat_info", "cmdstat_time", "cmdstat_hmget", "cmdstat_hset",
                    "cmdstat_pexpire", "cmdstat_get", "cmdstat_set", "cmdstat_exists"}


async def _round_trips(client: redis.asyncio.Redis) -> int:
    """Commands clients have sent the server so far (minus INFO and our scripts' insides)."""
    stats: dict[str, Any] = await client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in _NOT_ROUND_TRIPS)


async def _time(limiter: Limiter, n: int, settle: bool) -> float:
    started = time.perf_counter()
    for _ in range(n):
        admission = await limiter.admit(TENANT, 500)
        if settle:  # used != reserved, so settle has work to do (a round trip on Redis)
            await limiter.settle(TENANT, admission.reserved_tokens, 320)
    return (time.perf_counter() - started) / n * 1e6


async def measure_admission(
    backend: str = "memory", n: int = 20_000, redis_url: str = "redis://127.0.0.1:6379/15",
) -> dict[str, Any]:
    """Cost of `n` sequential admissions on `backend` ("memory" or "redis").

    Returns {"backend", "n", "admit_us", "admit_settle_us"} and, for Redis,
    "round_trips_per_admit" and "round_trips_per_admission" (admit + settle).
    """
    limiter: Limiter
    result: dict[str, Any] = {"backend": backend, "n": n}
    if backend == "memory":
        limiter = MemoryLimiter()
        await _time(limiter, min(n, 1000), settle=True)  # warm up
        result["admit_us"] = await _time(limiter, n, settle=False)
        result["admit_settle_us"] = await _time(limiter, n, settle=True)
        return result
    if backend != "redis":
        raise ValueError(f"unknown backend {backend!r}")
    prefix = f"gw:bench:{time.time_ns()}:"
    limiter = RedisLimiter(redis_url, fail_open=False, prefix=prefix)
    client = redis.asyncio.from_url(redis_url)
    try:
        await _time(limiter, 10, settle=True)  # warm up: connect, load the scripts
        before = await _round_trips(client)
        result["admit_us"] = await _time(limiter, n, settle=False)
        middle = await _round_trips(client)
        result["admit_settle_us"] = await _time(limiter, n, settle=True)
        after = await _round_trips(client)
        result["round_trips_per_admit"] = (middle - before) / n
        result["round_trips_per_admission"] = (after - middle) / n
        await client.delete(prefix + TENANT.name)
    finally:
        await limiter.close()
        await client.aclose()
    return result


async def _main(args: argparse.Namespace) -> None:
    for backend, n in (("memory", args.memory), ("redis", args.redis)):
        r = await measure_admission(backend, n, args.redis_url)
        line = (f"{backend:6} n={n:<6} admit {r['admit_us']:7.1f} µs   "
                f"admit+settle {r['admit_settle_us']:7.1f} µs")
        if backend == "redis":
            line += (f"   round trips: admit {r['round_trips_per_admit']:.2f}, "
                     f"admit+settle {r['round_trips_per_admission']:.2f}")
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--memory", type=int, default=20_000, help="memory admissions")
    parser.add_argument("--redis", type=int, default=2_000, help="Redis admissions")
    asyncio.run(_main(parser.parse_args()))
