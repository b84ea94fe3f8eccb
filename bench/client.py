"""The load generator, a process of its own (`python -m bench.client`), the same client for
every target: JSON commands on stdin, one JSON answer each on stdout.

`bench` is `gateway.bench.run`, what `llm-gateway bench` runs; `idle_open`/`idle_close` hold
streams open; `disconnect` closes streams mid-answer and says when.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from bench.config import CLIENT_KEY
from gateway.bench import chat_url, percentiles, run

IDLE_MODEL = "mock-1+silence=300@0"  # head event, then silence: the gateway sends heartbeats


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


def chat_body(model: str, stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


class Client:
    def __init__(self) -> None:
        self.idle: list[asyncio.Task[None]] = []
        self.idle_session: aiohttp.ClientSession | None = None
        self.opened = 0
        self.failed: Counter[str] = Counter()
        self.pings = 0

    async def bench(self, url: str, model: str, concurrency: int, requests: int) -> dict[str, Any]:
        return await run(url, CLIENT_KEY, model, concurrency, requests)

    async def nonstream(self, url: str, model: str, concurrency: int, requests: int) -> dict[str, Any]:
        """`requests` non-stream completions, `concurrency` at a time: ok/errors and latency."""
        body = orjson.dumps(chat_body(model, stream=False))
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        left = requests
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    started = time.perf_counter()
                    try:
                        async with session.post(chat_url(url), data=body, headers=headers()) as resp:
                            answer = await resp.read()
                            if resp.status != 200 or b'"choices"' not in answer:
                                errors[str(resp.status)] += 1
                                continue
                    except aiohttp.ClientError as exc:
                        errors[type(exc).__name__] += 1
                        continue
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, requests)))))
            wall = time.perf_counter() - started
        return {"url": url, "model": model, "concurrency": concurrency, "requests": requests,
                "ok": len(latencies), "errors": dict(errors), "tokens": 0,
                "requests_per_second": round(len(latencies) / wall, 2) if wall > 0 else 0.0,
                "total_ms": percentiles(latencies, 1000), "ttfb_ms": percentiles(latencies, 1000)}

    async def idle_open(self, url: str, n: int, parallel: int, timeout: float) -> dict[str, Any]:
        """Open `n` streams that stay open (the mock goes silent after its first event)."""
        connector = aiohttp.TCPConnector(limit=0)
        self.idle_session = session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))
        self.opened, self.failed, self.pings = 0, Counter(), 0
        gate = asyncio.Semaphore(parallel)
        body = orjson.dumps(chat_body(IDLE_MODEL))

        async def hold() -> None:
            await gate.acquire()
            waiting = True
            try:
                async with session.post(chat_url(url), data=body, headers=headers()) as resp:
                    if resp.status != 200:
                        self.failed[str(resp.status)] += 1
                        return
                    await resp.content.readany()
                    self.opened += 1
                    gate.release()
                    waiting = False
                    async for data in resp.content.iter_any():
                        self.pings += data.count(b": ping")
            except aiohttp.ClientError as exc:
                self.failed[type(exc).__name__] += 1
            finally:
                if waiting:
                    gate.release()

        started = time.monotonic()
        self.idle = [asyncio.create_task(hold()) for _ in range(n)]
        while self.opened + sum(self.failed.values()) < n and time.monotonic() - started < timeout:
            await asyncio.sleep(0.05)
        return {"opened": self.opened, "failed": dict(self.failed),
                "seconds": round(time.monotonic() - started, 3)}

    async def idle_close(self) -> dict[str, Any]:
        for task in self.idle:
            task.cancel()
        await asyncio.gather(*self.idle, return_exceptions=True)
        if self.idle_session is not None:
            await self.idle_session.close()
        result = {"closed": len(self.idle), "pings": self.pings}
        self.idle, self.idle_session = [], None
        return result

    async def disconnect(self, url: str, n: int, after: int, prefix: str) -> dict[str, Any]:
        """Open paced streams one by one; close each after `after` content chunks, noting when."""
        closes: list[tuple[str, float]] = []
        body = orjson.dumps(chat_body("mock-1+tps=50,words=500"))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for i in range(n):
                rid = f"{prefix}-{i}"
                resp = await session.post(chat_url(url), data=body,
                                          headers={**headers(), "X-Request-ID": rid})
                got = 0
                while got < after:
                    data = await resp.content.readany()
                    if not data:
                        break
                    got += data.count(b'"content":"') - data.count(b'"content":""')
                closes.append((rid, time.monotonic()))
                resp.close()
                await asyncio.sleep(0.02)
        return {"closes": closes}


async def client_main() -> None:
    client = Client()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command = orjson.loads(line)
        op = command.pop("op")
        if op == "quit":
            return
        result = await getattr(client, op)(**command)
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        sys.stdout.flush()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (as the gateway and the mock use), else asyncio's default."""
    with contextlib.suppress(ImportError):
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(client_main())
