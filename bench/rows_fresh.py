"""The rows that each need a gateway of their own, started fresh so that RSS at rest is not
the heap earlier rows grew: idle streams (heartbeats on and off, and the aiohttp floor), cost
growth with concurrency, the stdlib asyncio loop, and admission (memory vs Redis).

Same contract as `rows.py`: `async def row(bench: Run) -> None` writes `bench.results[name]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from bench.admission import measure_admission
from bench.proc_stats import children, connections_to, cpu_seconds, rss_bytes
from bench.procs import Floor, Gateway, Nginx, find_binary, start_redis
from bench.runner import Run

HEARTBEAT_SECONDS = 2.0
GROWTH = (1, 10, 100, 1000, 5000)  # concurrent streams in the cost-growth table
GROWTH_MODEL = "mock-1+words=20,tps=10"  # about 2 s per stream: the streams overlap


async def idle_streams(bench: Run) -> None:
    """`idle["heartbeat_on"]`, `idle["heartbeat_off"]`: the gateway; `idle["floor"]`: the
    aiohttp floor holding the same streams (it has no heartbeats: compare with heartbeat_off);
    in a full run `idle["nginx"]`, nginx -> mock at 1,000 streams (the repo's nginx.conf
    allows 8,192 connections per worker, and a stream holds two)."""
    # --quick: 1,000 streams on each of the three, so that the floor fits in its minute.
    counts = [1000] if bench.quick else [1000, 9_900]
    for name, heartbeat in (("heartbeat_on", HEARTBEAT_SECONDS), ("heartbeat_off", 0.0)):
        gateway = await Gateway(bench.procs, f"gateway-{name}", bench.mock_url,
                                heartbeat=heartbeat).ready()
        try:
            # Heartbeats off, nothing ticks: measured like the floor, without /metrics scrapes.
            beats = partial(gateway.metric, "gateway_heartbeats_total") if heartbeat else None
            await idle_on(bench, name, gateway.url, [gateway.pid], counts, beats)
        finally:
            gateway.stop()
    floor = await Floor(bench.procs, "floor-idle", bench.mock_url).ready()
    try:
        await idle_on(bench, "floor", floor.url, [floor.pid], counts, None)
    finally:
        floor.stop()
    binary, mock_port = find_binary("nginx"), urlsplit(bench.mock_url).port
    if not bench.quick and binary is not None and mock_port is not None:
        nginx = await Nginx(bench.procs, "nginx-idle", binary, mock_port).ready()
        try:
            await idle_on(bench, "nginx", nginx.url, nginx.pids, [1000], None)
        finally:
            nginx.stop()


async def idle_on(bench: Run, name: str, url: str, pids: list[int], counts: list[int],
                  heartbeats: Callable[[], Awaitable[float]] | None) -> None:
    """RSS and CPU of the processes `pids` (summed) serving `url` with N idle open streams (the
    mock silent after its first event); `heartbeats` reads their heartbeat counter (None: they
    send none)."""
    # With heartbeats, windows of whole heartbeat periods; without, nothing ticks: 1 s will do.
    window = (HEARTBEAT_SECONDS if heartbeats else 1.0) * (1 if bench.quick else 2)
    settle = HEARTBEAT_SECONDS + 0.5 if heartbeats else 0.5  # every stream in its rhythm
    rounds = 2 if bench.quick else 3
    out = bench.results.setdefault("idle", {}).setdefault(name, {})
    await bench.warm_up(url)
    await asyncio.sleep(0.5)
    out["rss_base"] = _rss(pids)
    for n in counts:
        after_open = settle + rounds * (window + 0.2) + 2  # the windows, then closing
        if bench.left() < n / 300 + 3 + after_open:  # opening runs at a few hundred streams/s
            out[str(n)] = {"skipped": "out of time"}
            continue
        cpu0 = _cpu(pids)
        opened = await bench.ask("idle_open", url=url, n=n, parallel=200,
                                 timeout=min(120, bench.left() - after_open))
        open_cpu = _cpu(pids) - cpu0
        await asyncio.sleep(settle)
        # Two or three windows; the quietest is reported (other work on the machine only ever
        # adds CPU time).
        windows = []
        for _ in range(rounds):
            beats0 = await heartbeats() if heartbeats else 0.0
            cpu1, t1 = _cpu(pids), time.monotonic()
            await asyncio.sleep(window)
            beats1 = await heartbeats() if heartbeats else 0.0
            cpu2, t2 = _cpu(pids), time.monotonic()
            windows.append({"idle_cpu": cpu2 - cpu1, "window": t2 - t1, "heartbeats": beats1 - beats0})
        quietest = min(windows, key=lambda w: w["idle_cpu"] / w["window"])
        rss = _rss(pids)
        closed = await bench.ask("idle_close")
        out[str(n)] = {**opened, "open_cpu": open_cpu, "rss": rss, **quietest, "windows": windows,
                       "pings_seen": closed["pings"]}
        await asyncio.sleep(1.0)
        out[str(n)]["rss_after_close"] = _rss(pids)


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _rss(pids: list[int]) -> int:
    return sum(rss_bytes(pid) for pid in pids)


async def cost_growth(bench: Run) -> None:
    """Gateway CPU per streamed request and RSS at 1 ... 5,000 concurrent streams, each
    stream the same (`GROWTH_MODEL`); how many were really open at once is the peak of client
    connections the gateway held (sampled from /proc/net/tcp, costing the gateway nothing)."""
    out = bench.results.setdefault("growth", {"model": GROWTH_MODEL})
    counts = [10, 100] if bench.quick else list(GROWTH)
    gateway = await Gateway(bench.procs, "gateway-growth", bench.mock_url).ready()
    try:
        await bench.warm_up(gateway.url)
        await asyncio.sleep(0.5)
        out["rss_base"] = rss_bytes(gateway.pid)
        for n in counts:
            if bench.left() < 10 + n / 300:
                out[str(n)] = {"skipped": "out of time"}
                continue
            peak = {"rss": 0, "streams": 0}
            sampling = asyncio.create_task(_sample(gateway.pid, gateway.port, peak))
            cpu0 = cpu_seconds(gateway.pid)
            result = await bench.ask("bench", url=gateway.url, model=GROWTH_MODEL, concurrency=n,
                                     requests=max(n, 4))
            cpu = cpu_seconds(gateway.pid) - cpu0
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            out[str(n)] = {
                "requests": result["requests"], "ok": result["ok"], "errors": result["errors"],
                "tokens": result["tokens"], "cpu": cpu, "ttfb_ms": result["ttfb_ms"],
                "rss_peak": peak["rss"], "streams_peak": peak["streams"],
            }
            bench.mock_state.reset()
    finally:
        gateway.stop()


async def _sample(pid: int, port: int, peak: dict[str, int]) -> None:
    while True:
        with contextlib.suppress(OSError):
            peak["rss"] = max(peak["rss"], rss_bytes(pid))
            peak["streams"] = max(peak["streams"], connections_to(port))
        await asyncio.sleep(0.2)


async def loop_variant(bench: Run) -> None:
    """The gateway on the stdlib asyncio loop, same workload as the uvloop rows."""
    if bench.quick or bench.left() < 60:
        return
    gateway = await Gateway(bench.procs, "gateway-asyncio", bench.mock_url, loop="asyncio").ready()
    try:
        await bench.warm_up(gateway.url)
        out = bench.results.setdefault("asyncio_loop", {})
        for concurrency, requests in ((1, 300), (50, 600)):
            out[f"ttfb{concurrency}"] = await bench.ask(
                "bench", url=gateway.url, model="mock-1+words=20", concurrency=concurrency,
                requests=requests)
        for concurrency, model, requests in ((1, "mock-1+words=5000", 6), (50, "mock-1+words=1000", 150)):
            result, cpu = await bench.measured({"gateway": gateway.pid}, "bench", url=gateway.url,
                                               model=model, concurrency=concurrency, requests=requests)
            out[f"chunks{concurrency}"] = {**result, "cpu": cpu}
    finally:
        gateway.stop()


async def admission(bench: Run) -> None:
    out: dict[str, Any] = bench.results.setdefault("admission", {})
    out["memory"] = await measure_admission("memory", 5_000 if bench.quick else 20_000)
    redis = await start_redis(bench.procs, "redis") if bench.left() >= 5 else None
    if redis is None:
        out["redis"] = {"skipped": "out of time" if bench.left() < 5 else "no redis-server"}
        return
    url = f"redis://127.0.0.1:{redis[1]}/15"
    out["redis"] = await measure_admission("redis", 500 if bench.quick else 2_000, url)
    if not bench.quick and bench.left() > 40:  # the same per-request cost inside the gateway
        for backend, ratelimit in (("memory", {}), ("redis", {"backend": "redis", "redis_url": url,
                                                               "fail_open": False})):
            gateway = await Gateway(bench.procs, f"gateway-{backend}", bench.mock_url,
                                    ratelimit=ratelimit).ready()
            try:
                await bench.warm_up(gateway.url)
                out[f"gateway_{backend}"] = await bench.ask(
                    "bench", url=gateway.url, model="mock-1+words=20", concurrency=1, requests=300)
            finally:
                gateway.stop()


WORKER_STREAMS = 200  # concurrent streams in the workers row


async def workers(bench: Run) -> None:
    """`workers = 1` vs `workers = 2` (both on a private Redis, the backend more than one
    worker needs): requests/s at `WORKER_STREAMS` concurrent streams and the gateway's CPU per
    request summed over its processes (master and workers). The load client and the mock run
    on the same cores, so the measured requests/s is what this machine gives, not the gateway's
    ceiling; `report.py` projects from the CPU per request."""
    out: dict[str, Any] = bench.results.setdefault("workers", {})
    need = 8 if bench.quick else 60  # about 4 s in a quick run
    redis = await start_redis(bench.procs, "redis-workers") if bench.left() >= need else None
    if redis is None:
        out["skipped"] = "out of time" if bench.left() < need else "no redis-server"
        return
    proc, port = redis
    ratelimit = {"backend": "redis", "redis_url": f"redis://127.0.0.1:{port}/0", "fail_open": False}
    requests = 600 if bench.quick else 3000
    try:
        for count in (1, 2):
            gateway = await Gateway(bench.procs, f"gateway-workers{count}", bench.mock_url,
                                    server={"workers": count}, ratelimit=ratelimit).ready()
            try:
                await bench.warm_up(gateway.url)
                # workers = 2: the master, its spawned workers and multiprocessing's resource
                # tracker (all children counted, whatever they are).
                pids = {"gateway": gateway.pid, **{f"child{i}": pid for i, pid in
                                                   enumerate(children(gateway.pid))}}
                result, cpu = await bench.measured(pids, "bench", url=gateway.url,
                                                   model="mock-1+words=20", concurrency=WORKER_STREAMS,
                                                   requests=requests)
                out[str(count)] = {**result, "cpu": cpu, "processes": len(pids)}
                bench.mock_state.reset()
            finally:
                gateway.stop()
    finally:
        bench.procs.stop(proc)
