"""Redis fixtures (a pytest plugin): the shared test Redis on db 15, and a throwaway server.

Without a Redis these tests skip, unless GATEWAY_TEST_REQUIRE_REDIS=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

#: db 15 of the local Redis; GATEWAY_TEST_REDIS_URL points the tests elsewhere.
TEST_REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when the environment says Redis is required (CI)."""
    if os.environ.get("GATEWAY_TEST_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (GATEWAY_TEST_REQUIRE_REDIS=1)")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The URL of a real Redis, db 15, flushed before and after the test.

    Synchronous on purpose, so an async fixture can pull it in with `getfixturevalue`.
    """
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=0.5)
    try:
        try:
            client.flushdb()
        except (redis.RedisError, OSError) as exc:
            skip_or_fail(f"no Redis at {TEST_REDIS_URL}: {exc}")
        yield TEST_REDIS_URL
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the test db, to look at keys behind the limiter's back."""
    client = redis.asyncio.from_url(redis_url, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProcess:
    """A `redis-server` subprocess on a fixed loopback port that a test can kill and restart."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        assert self.proc is None
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        # Ready when it says so: read its log rather than polling the port.
        log = b""
        while b"Ready to accept connections" not in log:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=10)
            if not line:
                await self.kill()
                raise RuntimeError(f"redis-server exited: {log.decode(errors='replace')}")
            log += line

    async def kill(self) -> None:
        """SIGKILL this server (its PID only) and reap it."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


@pytest.fixture
async def redis_process() -> AsyncIterator[RedisProcess]:
    """A started throwaway redis-server (no persistence), killed at the end."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        skip_or_fail("no redis-server binary to start a throwaway Redis")
        raise AssertionError("unreachable")
    server = RedisProcess(binary)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
