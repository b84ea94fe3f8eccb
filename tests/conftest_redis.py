"""Redis fixtures (a pytest plugin): a private throwaway `redis-server` per test, never a
flush of the shared Redis.

Without a Redis these tests skip, unless GATEWAY_TEST_REQUIRE_REDIS=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from tests._proc import Child, blocking, free_port, log_says, spawn

#: the shared Redis (db 15, or GATEWAY_TEST_REDIS_URL) for tests that keep to their own key
#: prefix and delete only their own keys; `redis_url` below is a private server instead.
TEST_REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def shared_prefix(name: str) -> Iterator[str]:
    """A key prefix of a test's own on the shared test Redis (skip or fail without one); its
    keys are deleted after. Synchronous, so an async fixture can pull a fixture built on it
    in with `getfixturevalue`."""
    prefix = f"gw:test:{name}:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=0.5)
    try:
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            skip_or_fail(f"no Redis at {TEST_REDIS_URL}: {exc}")
        yield prefix
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


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


def _start_redis(binary: str, port: int, log: Path, *extra: str) -> Child:
    """`redis-server` on `port` with no persistence; not waited for (see `_ready`)."""
    return spawn([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--daemonize", "no", *extra], log)


async def _ready(child: Child) -> None:
    # Ready when its log says so (bounded), rather than polling the port.
    await child.ready(log_says(child.log, "Ready to accept connections"), what="redis-server ready",
                      timeout=10)


def private_redis(tmp_path: Path, *extra: str) -> Iterator[str]:
    """The URL of a private, empty `redis-server` on a free port, killed (by PID) after."""
    port = free_port()
    child = _start_redis(_redis_binary(), port, tmp_path / f"redis-{port}.log", *extra)
    try:
        blocking(lambda: _ready(child))
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.stop_blocking(signal.SIGKILL, timeout=10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private Redis, so a test may do anything to it (a SCRIPT FLUSH, filling it) without
    touching the shared Redis on 6379, which the tests never flush. Synchronous on purpose, so
    an async fixture can pull it in with `getfixturevalue`."""
    yield from private_redis(tmp_path)


@pytest.fixture
def debug_redis_url(tmp_path: Path) -> Iterator[str]:
    """A private Redis that allows DEBUG (Redis 7 refuses it by default), to stall it."""
    yield from private_redis(tmp_path, "--enable-debug-command", "local")


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the test db, to look at keys behind the limiter's back."""
    client = redis.asyncio.from_url(redis_url, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


class RedisProcess:
    """A `redis-server` subprocess on a fixed loopback port that a test can kill and restart."""

    def __init__(self, binary: str, log_dir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_dir = log_dir
        self.child: Child | None = None
        self._starts = 0

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.child.proc if self.child is not None else None

    async def start(self) -> None:
        assert self.child is None
        self._starts += 1  # a fresh log per start: "Ready" must come from this one
        self.child = _start_redis(self.binary, self.port, self.log_dir / f"redis-{self.port}-{self._starts}.log")
        try:
            await _ready(self.child)
        except BaseException:
            await self.kill()
            raise

    async def kill(self) -> None:
        """SIGKILL this server (its PID only) and reap it."""
        if self.child is not None:
            child, self.child = self.child, None
            await child.stop(signal.SIGKILL, timeout=10)


@pytest.fixture
async def redis_process(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """A started throwaway redis-server (no persistence), killed at the end."""
    server = RedisProcess(_redis_binary(), tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
        # A connection redis-py dropped when this server died or hung (it closes them without
        # waiting) is in a reference cycle: collect it while this test's loop still runs, not
        # in a later test, where its transport would warn "loop is closed".
        gc.collect()
        await asyncio.sleep(0)
