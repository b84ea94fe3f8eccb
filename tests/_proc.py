"""The one way the tests start a process (the gateway, nginx, prometheus, redis-server): spawn
it with its output in a log file, wait until it is ready (bounded), stop it by its PID.

Rules: every wait is bounded and says what it waited for; a child that dies while we wait
fails at once with the tail of its log; stop is SIGTERM, then SIGKILL after `timeout`, and
only ever for a process started here. Blocking calls (`Popen.wait`) run in a thread so an
async test's event loop (and the mock upstream on it) keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp

T = TypeVar("T")

#: how long a process may take to get ready, and to exit once told to
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(predicate: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0,
                     interval: float = 0.01, what: str = "") -> T:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that.

    Bounded: after `timeout` seconds it raises AssertionError naming `what` and the last
    value seen, instead of leaning on the test's global timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {what or predicate!r} (last: {value!r})")
        await asyncio.sleep(interval)


async def run_module(module: str, *args: str, cwd: Path, timeout: float,
                     merge_stderr: bool = False) -> tuple[int, bytes, bytes]:
    """`python -m module args...` from `cwd` (on its path) to its end, bounded: (status, stdout,
    stderr); killed, and TimeoutError raised, past `timeout`. `merge_stderr`: stderr goes to
    stdout (and comes back empty)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(cwd)})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out, err or b""


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """A process we started; its stdout and stderr go to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def ready(self, probe: Callable[[], Awaitable[bool]], *, what: str,
                    timeout: float = START_TIMEOUT) -> None:
        """Wait until `probe()` is true; fail early (with its log) if the process exits."""

        async def up() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.proc.args!r} exited with {self.proc.returncode} "
                                   f"before {what}:\n{tail(self.log)}")
            return await probe()

        try:
            await eventually(up, timeout=timeout, interval=0.05, what=what)
        except AssertionError:
            raise RuntimeError(f"{self.proc.args!r}: not {what} within {timeout} s:\n{tail(self.log)}") from None

    async def exited(self, timeout: float = STOP_TIMEOUT) -> int:
        """Its exit code once it exits by itself (bounded: subprocess.TimeoutExpired)."""
        return await asyncio.to_thread(self.proc.wait, timeout)

    def send(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` (to its PID only) and reap it; SIGKILL if it is still there after `timeout`."""
        return await asyncio.to_thread(self.stop_blocking, sig, timeout)

    def stop_blocking(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """`stop` for sync code (fixture teardown)."""
        self.send(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


def spawn(argv: list[str], log: Path, *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> Child:
    """Start `argv` with stdin closed and stdout+stderr appended to `log` (not waited for)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd)
    return Child(proc, log)


@contextlib.asynccontextmanager
async def running(argv: list[str], log: Path, *, env: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> AsyncIterator[Child]:
    """`spawn`, and `stop` on the way out whatever happened."""
    child = spawn(argv, log, env=env, cwd=cwd)
    try:
        yield child
    finally:
        await child.stop()


# Readiness probes for `Child.ready`.

def port_open(port: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return probe


def http_ok(url: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with aiohttp.ClientSession() as session:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    return resp.status == 200
        return False

    return probe


def log_says(child_log: Path, text: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return child_log.exists() and text in child_log.read_text(errors="replace")

    return probe


def blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run an async helper to the end from sync code, on its own loop in a worker thread
    (so it works inside a running event loop too): for the sync fixtures' API."""

    async def run() -> T:
        return await make()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()
