"""The rows measured on every target at once (direct, gateway, the aiohttp floor, nginx ->
gateway): TTFB, chunks/s, stalls, disconnect latency; and the pure-proxy row (gateway, floor
and nginx each proxying straight to the mock).

A row is one coroutine `async def row(bench: Run) -> None` that writes its figures into
`bench.results[<its name>]`; `report.py` turns each name into table lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bench.procs import Gateway, Nginx, find_binary
from bench.runner import Run

PACED = "50 (50 tok/s)"  # the TTFB row whose streams are paced like a real model's
STALL_SECONDS = 1.0  # a gap between two reads longer than this on a paced stream is a stall


async def median_round(bench: Run, urls: dict[str, str], rounds: int,
                       key: Callable[[dict[str, Any]], float], op: str = "bench", **workload: Any
                       ) -> dict[str, dict[str, Any]]:
    """`rounds` rounds of the workload, each on every target in turn (drift in the machine's
    other load then hits all targets alike); per target, the median round by `key`."""
    results: dict[str, list[dict[str, Any]]] = {target: [] for target in urls}
    for _ in range(rounds):
        for target, url in urls.items():
            result, cpu = await bench.measured(bench.pids, op, url=url, **workload)
            results[target].append({**result, "cpu": cpu})
            bench.mock_state.reset()
    return {target: sorted(runs, key=key)[len(runs) // 2] for target, runs in results.items()}


async def ttfb_and_throughput(bench: Run) -> None:
    quick = bench.quick
    r = bench.results
    fast, paced = "mock-1+words=20", "mock-1+words=20,tps=50"
    ttfb_runs = ([("1", 100, 2, fast), ("50", 200, 2, fast), (PACED, 100, 1, paced)] if quick else
                 [("1", 300, 3, fast), ("50", 600, 3, fast), (PACED, 300, 3, paced),
                  ("100", 800, 1, fast), ("500", 1500, 1, fast)])
    for label, requests, rounds, model in ttfb_runs:
        r.setdefault("ttfb", {})[label] = await median_round(
            bench, bench.urls, rounds, lambda x: x["ttfb_ms"]["p50"] or 0.0,
            model=model, concurrency=int(label.split()[0]), requests=requests)
    streams = [(1, "mock-1+words=3000" if quick else "mock-1+words=5000", 3 if quick else 6),
               (50, "mock-1+words=300" if quick else "mock-1+words=1000", 50 if quick else 150)]
    for concurrency, model, requests in streams:
        r.setdefault("chunks", {})[str(concurrency)] = await median_round(
            bench, bench.urls, 3, lambda x: x["tokens_per_second"],
            model=model, concurrency=concurrency, requests=requests)
    stall_n, words = (128, 10) if quick else (512, 30)
    r["stall"] = await median_round(  # paced streams: a gap past STALL_SECONDS is a stall
        bench, bench.urls, 1, lambda x: x["max_gap_ms"],
        model=f"mock-1+tps=10,words={words}", concurrency=stall_n, requests=stall_n)


async def disconnects(bench: Run) -> None:
    """Client closes mid-stream -> when the mock saw its upstream connection close (one
    monotonic clock for every process on the machine)."""
    n = 5 if bench.quick else 20
    for target, url in bench.urls.items():
        answer = await bench.ask("disconnect", url=url, n=n, after=3, prefix=f"disc-{target}")
        records = {s.request_id: s for s in bench.mock_state.streams}
        latencies = []
        for rid, closed in answer["closes"]:
            record = records.get(rid)
            if record is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.ended.wait(), 5)
            if record.closed_at is not None and not record.completed:
                latencies.append(record.closed_at - closed)
        bench.results.setdefault("disconnect", {})[target] = {"n": n, "ms": sorted(
            round(x * 1000, 3) for x in latencies)}
        bench.mock_state.reset()


async def nginx_proxy(bench: Run) -> None:
    """nginx proxying straight to the mock vs the gateway and the aiohttp floor: each proxy's
    own CPU per streamed request, and per non-stream request (`nonstream`), same workload, same
    rounds (the gateway and the floor must be in `bench.urls` and `bench.pids`)."""
    out = bench.results.setdefault("nginx_proxy", {})
    binary = find_binary("nginx")
    if binary is None or bench.left() < 15:
        out["skipped"] = "no nginx" if binary is None else "out of time"
        return
    mock_port = urlsplit(bench.mock_url).port
    assert mock_port is not None
    nginx = await Nginx(bench.procs, "nginx-proxy", binary, mock_port).ready()
    try:
        urls = {"gateway": bench.urls["gateway"], "floor": bench.urls["floor"], "nginx": nginx.url}
        pids = {"gateway": bench.pids["gateway"], "floor": bench.pids["floor"],
                "mock": bench.pids["mock"], **{f"nginx{i}": pid for i, pid in enumerate(nginx.pids)}}
        await bench.warm_up(nginx.url)
        saved, bench.pids = bench.pids, pids
        target_of = {url: target for target, url in urls.items()}

        def cpu(result: dict[str, Any]) -> float:
            return proxy_cpu(target_of[result["url"]], result)

        try:
            # Keys: "1", "50" (200-chunk streams, issue 14's) and "1 50ch", "50 50ch" (issue 25's).
            runs = (((1, 40, 50), (50, 100, 50), (50, 100, 200)) if bench.quick else
                    ((1, 60, 200), (50, 300, 200), (1, 200, 50), (50, 600, 50)))
            for concurrency, requests, chunks in runs:
                key = str(concurrency) if chunks == 200 else f"{concurrency} {chunks}ch"
                out[key] = await median_round(
                    bench, urls, 1 if bench.quick else 3, cpu,
                    model=f"mock-1+words={chunks}", concurrency=concurrency, requests=requests)
            if bench.left() >= 10:
                nonstream = bench.results.setdefault("nonstream", {})
                nonstream["50"] = await median_round(
                    bench, urls, 1 if bench.quick else 3, cpu, op="nonstream",
                    model="mock-1+words=200", concurrency=50, requests=300 if bench.quick else 1000)
            else:
                bench.results["nonstream"] = {"skipped": "out of time"}
        finally:
            bench.pids = saved
    finally:
        nginx.stop()


def proxy_cpu(target: str, result: dict[str, Any]) -> float:
    """CPU seconds the proxy spent in a measured result: the gateway's, the floor's, or all
    nginx processes' (master and workers)."""
    cpu: dict[str, float] = result["cpu"]
    if target == "nginx":
        return sum(v for k, v in cpu.items() if k.startswith("nginx"))
    return cpu[target]


async def translated(bench: Run) -> None:
    """An OpenAI client through the gateway to an Anthropic-dialect upstream (the mock's
    /v1/messages), translated event by event, vs the pass-through gateway: CPU per request,
    same workload, same rounds (the pass-through gateway must be in `bench.urls`/`bench.pids`)."""
    out = bench.results.setdefault("translated", {})
    if bench.left() < 15:
        out["skipped"] = "out of time"
        return
    gateway = await Gateway(bench.procs, "gateway-translated", bench.mock_url,
                            upstream={"dialect": "anthropic"}).ready()
    try:
        await bench.warm_up(gateway.url)
        urls = {"gateway": bench.urls["gateway"], "translated": gateway.url}
        saved, bench.pids = bench.pids, {"gateway": bench.pids["gateway"], "translated": gateway.pid}

        def cpu(result: dict[str, Any]) -> float:
            return float(result["cpu"]["translated" if result["url"] == gateway.url else "gateway"])

        try:
            out["50"] = await median_round(bench, urls, 1 if bench.quick else 3, cpu,
                                           model="mock-1+words=200", concurrency=50,
                                           requests=100 if bench.quick else 300)
        finally:
            bench.pids = saved
    finally:
        gateway.stop()
