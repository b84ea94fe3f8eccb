"""The resumable stream's live tail against the plain stream: the gateway's CPU per simple
event for `POST /api/chat/stream` (relayed straight to the client) and for
`POST /api/chat/streams` + `GET /api/chat/streams/{id}` (appended to the log, then written
to the subscriber), on one gateway per backend (memory; Redis when redis-server is
installed). Rounds alternate plain / resumable, so drift on the machine hits both alike.

The load is this process's (it hosts the mock too): only the gateway's CPU is measured.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from bench.config import CLIENT_KEY
from bench.proc_stats import cpu_seconds
from bench.procs import Gateway, start_redis
from bench.runner import Run

WORDS = 200  # events per answer: the per-request cost is spread thin, the tail dominates
MODEL = f"mock-1+words={WORDS}"
CONCURRENCY = 20
GOALS = {"memory": 1.3, "redis": 2.0}


async def resumable(bench: Run) -> None:
    """`results["resumable"][backend]`: us of gateway CPU per event, plain and resumable."""
    out = bench.results.setdefault("resumable", {})
    backends: list[tuple[str, dict[str, Any]]] = [("memory", {"backend": "memory"})]
    redis = await start_redis(bench.procs, "redis-resumable")
    if redis is not None:
        backends.append(("redis", {"backend": "redis"}))
    else:
        out["redis"] = {"skipped": "redis-server is not installed"}
    streams = 40 if bench.quick else 150
    for name, section in backends:
        if bench.left() < 15:
            out[name] = {"skipped": "out of time"}
            continue
        ratelimit = {"redis_url": f"redis://127.0.0.1:{redis[1]}/0"} if redis and name == "redis" else {}
        gateway = await Gateway(bench.procs, f"gateway-resumable-{name}", bench.mock_url,
                                extra={"streams": section}, ratelimit=ratelimit).ready()
        try:
            out[name] = await _measure(bench, gateway, streams)
        finally:
            gateway.stop()
    if redis is not None:
        bench.procs.stop(redis[0])


async def _measure(bench: Run, gateway: Gateway, streams: int) -> dict[str, Any]:
    totals = {"plain": [0.0, 0], "resumable": [0.0, 0]}  # CPU seconds, events
    rounds = 2 if bench.quick else 3
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as session:
        await _run(session, gateway.url, "plain", 10)  # warm up both paths
        await _run(session, gateway.url, "resumable", 10)
        for _ in range(rounds):
            for kind in ("plain", "resumable"):
                if bench.left() < 5:
                    break
                before = cpu_seconds(gateway.pid)
                events = await _run(session, gateway.url, kind, streams)
                totals[kind][0] += cpu_seconds(gateway.pid) - before
                totals[kind][1] += events
    result: dict[str, Any] = {"streams_per_round": streams, "rounds": rounds, "words": WORDS}
    for kind, (cpu, events) in totals.items():
        result[f"{kind}_events"] = events
        result[f"{kind}_us_per_event"] = cpu / events * 1e6 if events else None
    if result["plain_us_per_event"] and result["resumable_us_per_event"]:
        result["ratio"] = result["resumable_us_per_event"] / result["plain_us_per_event"]
    return result


async def _run(session: aiohttp.ClientSession, url: str, kind: str, streams: int) -> int:
    """`streams` answers, CONCURRENCY at a time; the simple events received."""
    gate = asyncio.Semaphore(CONCURRENCY)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "bench"}]}

    async def one() -> int:
        async with gate:
            if kind == "plain":
                async with session.post(f"{url}/api/chat/stream", json=body) as response:
                    raw = await response.read()
            else:
                async with session.post(f"{url}/api/chat/streams", json=body) as created:
                    path = (await created.json())["url"]
                async with session.get(url + path) as response:
                    raw = await response.read()
            return raw.count(b"\n\n") - raw.count(b": ping") - raw.count(b"retry:")

    return sum(await asyncio.gather(*(one() for _ in range(streams))))


def resumable_lines(r: dict[str, Any]) -> list[str]:
    rows = r["resumable"]
    lines = ["", f"resumable streams, gateway CPU per simple event ({WORDS}-event answers, "
                 f"{CONCURRENCY} concurrent):"]
    for name in ("memory", "redis"):
        row = rows.get(name)
        if row is None:
            continue
        if "skipped" in row:
            lines.append(f"  {name}: skipped ({row['skipped']})")
            continue
        plain, resumable_us = row["plain_us_per_event"], row["resumable_us_per_event"]
        ratio = row.get("ratio")
        goal = GOALS[name]
        verdict = "" if ratio is None else f" (goal <= {goal:.1f}x: {'met' if ratio <= goal else 'MISSED'})"
        lines.append(f"  {name}: /api/chat/stream {plain:.1f} us, resumable {resumable_us:.1f} us"
                     + ("" if ratio is None else f", {ratio:.2f}x") + verdict)
    return lines
