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
import orjson

from bench.config import CLIENT_KEY
from bench.proc_stats import cpu_seconds
from bench.procs import Gateway, start_redis
from bench.runner import Run

WORDS = 200  # events per answer: the per-request cost is spread thin, the tail dominates
MODEL = f"mock-1+words={WORDS}"
CONCURRENCY = 20
SETTLE_SECONDS = 0.5
GOALS = {"memory": 1.3, "redis": 2.0}
#: plain: POST /api/chat/stream; get_form: GET /api/chat/stream?messages= (resumable, one
#: request, the origin story's client); created: POST /api/chat/streams, then GET its url
KINDS = ("plain", "get_form", "created")


async def resumable(bench: Run) -> None:
    """`results["resumable"][backend]`: us of gateway CPU per event, plain and resumable."""
    out = bench.results.setdefault("resumable", {})
    backends: list[tuple[str, dict[str, Any]]] = [("memory", {"backend": "memory"})]
    redis = await start_redis(bench.procs, "redis-resumable") if bench.left() > 40 else None
    if redis is not None:
        backends.append(("redis", {"backend": "redis"}))
    else:
        out["redis"] = {"skipped": "out of time" if bench.left() <= 40 else "redis-server is not installed"}
    streams = 20 if bench.quick else 150
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
    cpu = dict.fromkeys(KINDS, 0.0)
    events = dict.fromkeys(KINDS, 0)
    rounds = 2 if bench.quick else 3
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as session:
        for kind in KINDS:  # warm up every path
            await _run(session, gateway.url, kind, 10)
        for _ in range(rounds):
            for kind in KINDS:
                if bench.left() < 5:
                    break
                before = cpu_seconds(gateway.pid)
                events[kind] += await _run(session, gateway.url, kind, streams)
                await asyncio.sleep(SETTLE_SECONDS)  # what runs on after the answers (Redis flushes)
                cpu[kind] += cpu_seconds(gateway.pid) - before
    result: dict[str, Any] = {"streams_per_round": streams, "rounds": rounds, "words": WORDS}
    for kind in KINDS:
        result[f"{kind}_events"] = events[kind]
        result[f"{kind}_us_per_event"] = cpu[kind] / events[kind] * 1e6 if events[kind] else None
    plain = result["plain_us_per_event"]
    for kind in KINDS[1:]:
        if plain and result[f"{kind}_us_per_event"]:
            result[f"{kind}_ratio"] = result[f"{kind}_us_per_event"] / plain
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
            elif kind == "get_form":
                query = {"messages": orjson.dumps(body["messages"]).decode(), "model": MODEL}
                async with session.get(f"{url}/api/chat/stream", params=query) as response:
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
        goal = GOALS[name]
        parts = [f"POST /api/chat/stream {row['plain_us_per_event']:.1f} us"]
        for kind, label in (("get_form", "resumable GET form"), ("created", "POST /api/chat/streams + GET")):
            ratio = row.get(f"{kind}_ratio")
            if ratio is not None:
                met = "met" if ratio <= goal else "MISSED"
                parts.append(f"{label} {row[f'{kind}_us_per_event']:.1f} us = {ratio:.2f}x ({met})")
        lines.append(f"  {name} (goal <= {goal:.1f}x): " + "; ".join(parts))
    return lines
