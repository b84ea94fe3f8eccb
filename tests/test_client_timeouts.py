"""Slow and idle clients against the real listening socket: header, body and keep-alive
timeouts, and the connection cap (gateway/connections.py)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import redis
import redis.asyncio
from aiohttp import web

from gateway.admission.limiter import TenantLimits
from gateway.admission.redis import RedisLimiter
from gateway.app import build_app
from gateway.config import Config
from gateway.connections import CloseLog, connection_cap, guarded_runner
from gateway.logs import make_logger
from gateway.state import LOGGER, METRICS
from tests.conftest import CLIENT_KEY, Mock, auth, chat_body, make_config

BOUND = 10.0  # every wait on the gateway is bounded by this


@dataclass
class Served:
    app: web.Application
    config: Config
    port: int
    log: io.StringIO

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def closed(self, reason: str) -> float:
        value = self.app[METRICS].exposed.get_sample_value(
            "gateway_client_connections_closed_total", {"reason": reason})
        return value or 0.0

    def log_lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(mock: Mock) -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(**server: Any) -> Served:
        config = make_config(mock.url, server=server)
        log = io.StringIO()
        app = build_app(config, make_logger(log))
        runner = guarded_runner(app, config, app[METRICS], app[LOGGER], handler_cancellation=True,
                                access_log=None, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return Served(app, config, runner.addresses[0][1], log)

    yield start
    for runner in runners:
        await runner.cleanup()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the gateway sends until it closes the connection (bounded)."""
    return await asyncio.wait_for(reader.read(), BOUND)


async def test_headers_at_a_byte_at_a_time_are_cut_at_the_header_timeout(serve: Serve) -> None:
    served = await serve(client_header_timeout_seconds=0.5, keepalive_timeout_seconds=60)
    reader, writer = await served.connect()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sent = 0
    for byte in head:  # the slowloris: a byte every 0.1 s never finishes the head in time
        if reader.at_eof():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        await asyncio.sleep(0.1)
    assert await read_until_closed(reader) == b""
    assert sent < len(head)
    assert served.closed("header_timeout") == 1.0
    writer.close()


async def test_a_bare_connection_is_closed_at_the_header_timeout(serve: Serve) -> None:
    served = await serve(client_header_timeout_seconds=0.3, keepalive_timeout_seconds=60)
    reader, writer = await served.connect()
    assert await read_until_closed(reader) == b""
    assert served.closed("header_timeout") == 1.0
    lines = [line for line in served.log_lines() if line["event"] == "client_connection_closed"]
    assert [(line["reason"], line["count"]) for line in lines] == [("header_timeout", 1)]
    writer.close()


async def test_a_body_that_never_comes_gets_408_at_the_body_timeout(serve: Serve) -> None:
    served = await serve(client_header_timeout_seconds=5, client_body_timeout_seconds=0.5,
                         keepalive_timeout_seconds=60)
    reader, writer = await served.connect()
    body = orjson.dumps(chat_body())
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:10])
    await writer.drain()
    answer = await read_until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert served.closed("body_timeout") == 1.0
    assert served.closed("header_timeout") == 0.0
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_at_its_timeout(serve: Serve) -> None:
    served = await serve(client_header_timeout_seconds=30, keepalive_timeout_seconds=0.5)
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    assert orjson.loads(await asyncio.wait_for(reader.readexactly(length), BOUND)) == {"status": "ok"}
    assert await read_until_closed(reader) == b""  # kept alive, then closed when idle
    assert served.closed("keepalive_timeout") == 1.0
    assert served.closed("header_timeout") == 0.0
    writer.close()


async def test_connections_over_the_cap_are_closed_and_a_stream_still_works(serve: Serve) -> None:
    served = await serve(max_connections=2, client_header_timeout_seconds=30,
                         keepalive_timeout_seconds=60)
    _, idle = await served.connect()  # one slot taken by a client doing nothing
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{served.url}/v1/chat/completions", json=chat_body(),
                                headers=auth()) as response:
            assert response.status == 200
            first = await asyncio.wait_for(response.content.readline(), BOUND)
            assert first.startswith(b"data: ")
            extra_reader, extra = await served.connect()  # the third: over the cap
            assert await read_until_closed(extra_reader) == b""
            rest = await asyncio.wait_for(response.content.read(), BOUND)
    assert rest.rstrip().endswith(b"data: [DONE]")
    assert served.closed("max_connections") == 1.0
    idle.close()
    extra.close()


def test_the_default_cap_leaves_room_for_upstream_sockets(mock_url: str = "http://127.0.0.1:9") -> None:
    import resource

    config = make_config(mock_url, limits={"max_concurrent_streams": 100})
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = connection_cap(config)
    assert cap == max(16, soft - min(200, soft // 2) - min(256, soft // 8))
    # a default soft limit of 1,024 with the default 1,000 streams still serves clients
    assert connection_cap(make_config(mock_url), soft=1024) == 1024 - 512 - 128
    assert connection_cap(make_config(mock_url, server={"max_connections": 7})) == 7


def test_close_log_counts_every_close_and_logs_one_line_per_interval() -> None:
    log = io.StringIO()
    config = make_config("http://127.0.0.1:9")
    from gateway.metrics import Metrics

    metrics = Metrics(config)
    now = [100.0]
    close = CloseLog(metrics, make_logger(log), clock=lambda: now[0])
    for _ in range(5):
        close("header_timeout")
    now[0] += 10.0
    close("header_timeout")
    lines = [orjson.loads(line) for line in log.getvalue().splitlines()]
    assert [(line["reason"], line["count"]) for line in lines] == [
        ("header_timeout", 1), ("header_timeout", 5)]
    assert metrics.exposed.get_sample_value(
        "gateway_client_connections_closed_total", {"reason": "header_timeout"}) == 6.0


async def test_an_admission_that_times_out_leaves_nothing_reserved(debug_redis_url: str) -> None:
    tenant = TenantLimits("stalled", requests_per_minute=10, tokens_per_minute=6000)
    errors: list[Exception] = []
    limiter = RedisLimiter(debug_redis_url, fail_open=True, prefix="h2:", on_error=errors.append,
                           timeout=0.5)
    stall = redis.asyncio.from_url(debug_redis_url, socket_timeout=BOUND)
    try:
        # Load the admission script first: a stalled EVALSHA of an unloaded script would only
        # get NOSCRIPT when Redis wakes, the case where nothing runs late anyway.
        await limiter.admit(TenantLimits("warm", requests_per_minute=10, tokens_per_minute=10), 1)
        sleeping = asyncio.create_task(stall.execute_command("DEBUG", "SLEEP", "1.5"))
        while not sleeping.done() and not await _is_sleeping(debug_redis_url):
            pass
        admission = await limiter.admit(tenant, 3000)  # sent, reply not seen in 0.5 s
        assert (admission.reserved_tokens, admission.took_request) == (0, False)
        assert [type(e).__name__ for e in errors] == ["TimeoutError"]
        await asyncio.wait_for(sleeping, BOUND)  # Redis wakes and runs what was queued
        await asyncio.wait_for(limiter.cancels_done(), BOUND)
        quota = await limiter.peek(tenant)
        assert quota is not None
        # Without the cancel the late script kept 3000 tokens and a request (refill: 100/s).
        assert quota.remaining_tokens == 6000
        assert quota.remaining_requests == 10
    finally:
        await stall.aclose()
        await limiter.close()


async def _is_sleeping(url: str) -> bool:
    """True once the server stops answering (DEBUG SLEEP has started): a PING times out."""
    probe = redis.asyncio.from_url(url, socket_timeout=0.2)
    try:
        await probe.ping()
        return False
    except (redis.RedisError, OSError):
        return True
    finally:
        await probe.aclose()
