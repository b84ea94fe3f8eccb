"""The soak run: mixed traffic against a gateway subprocess for a bounded time, then a check
that nothing leaked (fds, TCP sockets, active streams). Loopback only.

    python -m bench.soak [--seconds 60] [--concurrency 16] [--redis] [--json]

The mock upstream runs in this process; the gateway is `python -m gateway serve --config FILE`
(memory limiter; `--redis`: a private redis-server on a free port, restarted once mid-run).
Exit status 1 when something leaked or a request that must succeed did not.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repo root is not on the path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from bench.client import loop_factory  # noqa: E402
from bench.proc_stats import open_fds, rss_bytes, tcp_sockets  # noqa: E402
from bench.procs import Gateway, Procs, start_redis  # noqa: E402
from bench.soak_traffic import kinds, run_traffic  # noqa: E402

IDLE_TIMEOUT = 1.5  # the gateway's upstream idle timeout: `silence` faults go past it
FD_MARGIN = 10  # fds (and TCP sockets) above the start that still count as no leak
SETTLE_SECONDS = 20.0  # after traffic, the most we wait for counts to come back down
SAMPLE_SECONDS = 1.0


def snapshot(pid: int) -> dict[str, int]:
    sockets = tcp_sockets(pid)
    return {"fds": open_fds(pid), "tcp": sockets["listening"] + sockets["other"],
            "rss": rss_bytes(pid)}


async def soak(seconds: float, concurrency: int, use_redis: bool) -> dict[str, Any]:
    from gateway.mock import MockSettings, start_mock

    workdir = Path(tempfile.mkdtemp(prefix="gw-soak-"))
    procs = Procs(workdir)
    mock_runner, mock_url = await start_mock(settings=MockSettings(words=20))
    out: dict[str, Any] = {"seconds": seconds, "concurrency": concurrency,
                           "limiter": "redis" if use_redis else "memory"}
    try:
        ratelimit: dict[str, Any] = {}
        redis = None
        if use_redis:
            redis = await start_redis(procs, "redis")
            if redis is None:
                raise RuntimeError("--redis: no redis-server binary found")
            ratelimit = {"backend": "redis", "redis_url": f"redis://127.0.0.1:{redis[1]}/0",
                         "fail_open": True}
        gateway = await Gateway(
            procs, "gateway", mock_url, heartbeat=1.0, streams=1000, ratelimit=ratelimit,
            upstream={"idle_timeout_seconds": IDLE_TIMEOUT, "first_byte_timeout_seconds": 10,
                      "total_timeout_seconds": 60, "max_retries": 2, "backoff_base_seconds": 0.01,
                      "backoff_max_seconds": 0.2}).ready()
        mix = kinds(IDLE_TIMEOUT)
        # Warm up at the same concurrency, so the upstream connection pool is as big at the
        # start as it can be at the end: what remains above it is a leak, not a pool.
        await run_traffic(gateway.url, 1.0, concurrency, mix[:2])
        await asyncio.sleep(0.5)
        out["start"] = snapshot(gateway.pid)
        rss_series: list[tuple[float, int]] = []
        started = time.monotonic()

        async def sample() -> None:
            while True:
                rss_series.append((round(time.monotonic() - started, 1), rss_bytes(gateway.pid)))
                await asyncio.sleep(SAMPLE_SECONDS)

        sampler = asyncio.create_task(sample())
        traffic = asyncio.create_task(run_traffic(gateway.url, seconds, concurrency, mix))
        if redis is not None:  # once, mid-run: the limiter must ride through it
            await asyncio.sleep(seconds / 2)
            await asyncio.to_thread(procs.stop, redis[0])  # by its PID; the loop keeps serving
            out["redis_restarted_at"] = round(time.monotonic() - started, 1)
            await start_redis(procs, "redis-restarted", redis[1])
        outcomes = await traffic
        sampler.cancel()
        out["traffic_seconds"] = round(time.monotonic() - started, 1)
        out["end"], out["active_streams"], out["settle_seconds"] = await settle(gateway, out["start"])
        out["rss_mib"] = [(t, round(rss / 2**20, 1)) for t, rss in rss_series]
        out["outcomes"] = summarize_outcomes(outcomes, mix)
        gateway.stop()
    finally:
        procs.stop_all()
        await mock_runner.cleanup()
    out["problems"] = problems(out)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


async def settle(gateway: Gateway, start: dict[str, int]) -> tuple[dict[str, int], float, float]:
    """Poll (bounded) until the gateway is back within the margin and streams no longer run;
    the counts at that point, the active streams, and how long it took."""
    began = time.monotonic()
    while True:
        end = snapshot(gateway.pid)
        active = await gateway.metric("gateway_active_streams")
        back = end["fds"] <= start["fds"] + FD_MARGIN and end["tcp"] <= start["tcp"] + FD_MARGIN
        waited = time.monotonic() - began
        if (back and active == 0) or waited >= SETTLE_SECONDS:
            return end, active, round(waited, 1)
        await asyncio.sleep(0.25)


def summarize_outcomes(outcomes: Any, mix: Any) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, outcome), n in sorted(outcomes.items()):
        by_kind.setdefault(kind, {})[outcome] = n
    must = {k.name for k in mix if k.must_succeed}
    served = sum(n for (_, outcome), n in outcomes.items() if outcome == "ok")
    errors: dict[str, int] = {}
    for (_, outcome), n in outcomes.items():
        if outcome not in ("ok", "aborted"):
            errors[outcome] = errors.get(outcome, 0) + n
    failed_must = {kind: {o: n for o, n in per.items() if o != "ok"} for kind, per in by_kind.items()
                   if kind in must and any(o != "ok" for o in per)}
    return {"requests": sum(outcomes.values()), "served_ok": served, "errors": errors,
            "by_kind": by_kind, "must_succeed_failed": failed_must}


def problems(out: dict[str, Any]) -> list[str]:
    found = []
    if "end" not in out:
        return ["the run did not finish"]
    start, end = out["start"], out["end"]
    for key in ("fds", "tcp"):
        if end[key] > start[key] + FD_MARGIN:
            found.append(f"{key}: {end[key]} at the end vs {start[key]} at the start (margin {FD_MARGIN})")
    if out["active_streams"] != 0:
        found.append(f"gateway_active_streams is {out['active_streams']:g} after traffic stopped")
    if out["outcomes"]["served_ok"] == 0:
        found.append("no request was served")
    for kind, what in out["outcomes"]["must_succeed_failed"].items():
        found.append(f"{kind} requests must succeed: {what}")
    return found


def format_soak(out: dict[str, Any]) -> str:
    o, start, end = out["outcomes"], out["start"], out["end"]
    rss = out["rss_mib"]
    lines = [
        f"soak: {out['traffic_seconds']} s at concurrency {out['concurrency']}, {out['limiter']} limiter"
        + (f" (Redis restarted at {out['redis_restarted_at']} s)" if "redis_restarted_at" in out else ""),
        f"requests {o['requests']}, served ok {o['served_ok']}, errors {o['errors'] or 'none'}",
        *(f"  {kind:<12} {per}" for kind, per in o["by_kind"].items()),
        "gateway RSS MiB over time: " + ", ".join(f"{t:g}s {m:g}" for t, m in rss[:: max(1, len(rss) // 12)]),
        f"gateway fds {start['fds']} -> {end['fds']}, TCP sockets {start['tcp']} -> {end['tcp']} "
        f"(after {out['settle_seconds']:g} s settle), RSS {start['rss'] / 2**20:.1f} -> "
        f"{end['rss'] / 2**20:.1f} MiB, gateway_active_streams {out['active_streams']:g}",
        "result: " + ("no leak" if not out["problems"] else "; ".join(out["problems"])),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic time (default 60)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--redis", action="store_true",
                        help="Redis limiter on a private redis-server, restarted once mid-run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.seconds <= 0 or args.concurrency < 1:
        parser.error("--seconds must be > 0 and --concurrency >= 1")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        out = runner.run(soak(args.seconds, args.concurrency, args.redis))
    print(orjson.dumps(out).decode() if args.json else format_soak(out))
    return 1 if out["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
