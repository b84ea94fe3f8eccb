"""The soak's mixed traffic: each kind of request, how one is sent and read, and what came of
it. In-process, bounded in count (by the deadline) and in time (a timeout per request).

Outcomes: `ok` (a complete answer), `aborted` (this client closed it mid-stream, on purpose),
`http_<status>`, `stream_error` (an error event or a stream cut without `[DONE]`),
`connection`, `timeout`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
import orjson

from bench.config import CLIENT_KEY
from gateway.bench import chat_url

REQUEST_TIMEOUT = 30.0  # no request of the mix takes more than a few seconds


@dataclass(frozen=True)
class Kind:
    name: str
    weight: int  # share of the mix
    fault: str  # the mock's `x-mock-fault` header ("" = none)
    stream: bool = True
    read: str = "all"  # "all" | "abort" (close after 3 chunks) | "slow" (small reads, paced)
    must_succeed: bool = False  # any outcome but `ok` counts as a problem


def kinds(idle_timeout: float) -> tuple[Kind, ...]:
    return (
        Kind("stream", 6, "", must_succeed=True),
        Kind("nonstream", 3, "", stream=False, must_succeed=True),
        Kind("abort", 2, "tps=100,words=200", read="abort"),
        Kind("slow_reader", 1, "words=300", read="slow", must_succeed=True),
        Kind("fail_once", 1, "fail=1", must_succeed=True),  # retried before the first byte
        Kind("pause", 1, f"silence={idle_timeout / 4:g}@2", must_succeed=True),
        Kind("drop", 1, "drop=5"),
        Kind("garbage", 1, "garbage=3"),
        Kind("status_503", 1, "status=503"),
        Kind("silence", 1, f"silence={idle_timeout + 1:g}@2"),  # past the gateway's idle timeout
    )


def schedule(mix: tuple[Kind, ...]) -> itertools.cycle[Kind]:
    """The kinds in a fixed interleaved order, each as often as its weight says."""
    slots = [(i / k.weight, n, k) for n, k in enumerate(mix) for i in range(k.weight)]
    return itertools.cycle([k for _, _, k in sorted(slots, key=lambda s: (s[0], s[1]))])


async def send_one(session: aiohttp.ClientSession, url: str, kind: Kind, index: int) -> str:
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json",
               "X-Request-ID": f"soak-{index}"}  # unique, so `fail=1` fails once per request
    if kind.fault:
        headers["x-mock-fault"] = kind.fault
    body = orjson.dumps({"model": "mock-1", "stream": kind.stream,
                         "messages": [{"role": "user", "content": f"soak {index}"}]})
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT), session.post(
                chat_url(url), data=body, headers=headers) as resp:
            if resp.status != 200:
                await resp.read()
                return f"http_{resp.status}"
            if not kind.stream:
                answer = orjson.loads(await resp.read())
                return "ok" if answer.get("choices") else "stream_error"
            return await _read_stream(resp, kind)
    except TimeoutError:
        return "timeout"
    except (aiohttp.ClientError, orjson.JSONDecodeError):
        return "connection"


async def _read_stream(resp: aiohttp.ClientResponse, kind: Kind) -> str:
    seen = b""  # only the tail is kept: enough to find `[DONE]` and error events
    chunks = 0
    while True:
        if kind.read == "slow":
            data = await resp.content.read(512)
            await asyncio.sleep(0.005)
        else:
            data = await resp.content.readany()
        if not data:
            break
        chunks += data.count(b'"content":"')
        if b'"error"' in data:
            return "stream_error"
        seen = (seen + data)[-64:]
        if kind.read == "abort" and chunks >= 3:
            resp.close()  # the client goes away mid-stream
            return "aborted"
    return "ok" if b"data: [DONE]" in seen else "stream_error"


async def run_traffic(url: str, seconds: float, concurrency: int, mix: tuple[Kind, ...]
                      ) -> Counter[tuple[str, str]]:
    """`concurrency` workers sending the mix until `seconds` have passed; (kind, outcome) counts."""
    outcomes: Counter[tuple[str, str]] = Counter()
    order = schedule(mix)
    counter = itertools.count()
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            kind, index = next(order), next(counter)
            outcomes[(kind.name, await send_one(session, url, kind, index))] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return outcomes
