"""Redis fixtures (a pytest plugin): a private throwaway `redis-server` per test, never a
flush of the shared Redis.

Without a Redis these tests skip, unless GATEWAY_TEST_REQUIRE_REDIS=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

#: the shared Redis (db 15, or GATEWAY_TEST_REDIS_URL) for tests that keep to their own key
#: prefix and delete only their own keys; `redis_url` below is a private server instead.
TEST_REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when the environment says Redis is required (CI)."""
    if os.environ.get("GATEWAY_TEST_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (GATEWAY_TEST_REQUIRE_REDIS=1)")
    pytest.skip(reason)


def _redis_binary() -> str:
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        skip_or_fail("no redis-server binary to start a throwaway Redis")
        raise AssertionError("unreachable")
    return binary


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The URL of a private, empty `redis-server` on a free port, killed (by PID) after the test.

    Private so a test may do anything to it (a SCRIPT FLUSH, filling it) without touching the
    shared Redis on 6379, which the tests never flush. Synchronous on purpose, so an async
    fixture can pull it in with `getfixturevalue`.
    """
    port = _free_port()
    proc = subprocess.Popen(
        [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,  # unbuffered: select() sees all
    )
    try:
        _wait_ready(proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    # Ready when its log says so (bounded: 10 s), rather than polling the port.
    assert proc.stdout is not None
    deadline = time.monotonic() + 10
    log = b""
    while b"Ready to accept connections" not in log:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise RuntimeError("redis-server did not get ready within 10 s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"redis-server exited: {log.decode(errors='replace')}")
        log += line


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
    server = RedisProcess(_redis_binary())
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
