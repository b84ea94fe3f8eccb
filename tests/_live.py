"""Real processes for the deployment tests: the gateway as a subprocess of
`python -m gateway serve` in front of the in-process mock upstream, plus the
Debian binaries (nginx, prometheus, promtool) the tests put around it.

Everything listens on 127.0.0.1, waits are bounded, and only processes
started here are stopped, by their own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import chat_body, free_port

REPO = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sk-gw-live-test-key"
UPSTREAM_KEY = "upstream-secret"
START_TIMEOUT = 15.0


def require_binary(name: str) -> str:
    """Path of a Debian binary; skip without it, or fail when CI is set."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path:
        return path
    reason = f"{name} is not installed (Debian package: apt-get install {debian_package(name)})"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def debian_package(binary: str) -> str:
    return {"promtool": "prometheus"}.get(binary, binary)


def gateway_toml(
    port: int, mock_base_url: str, extra: str = "", heartbeat_seconds: float = 15
) -> str:
    key_sha256 = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    return f"""\
[server]
host = "127.0.0.1"
port = {port}
heartbeat_seconds = {heartbeat_seconds}

[[upstreams]]
name = "mock"
dialect = "openai"
base_url = "{mock_base_url}/v1"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["mock-*"]

[[tenants]]
name = "test"
key_sha256 = "{key_sha256}"
models = ["*"]
{extra}"""


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment minus GATEWAY_* overrides, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


async def wait_http_ok(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = START_TIMEOUT
) -> None:
    """Poll url until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"{process.args!r} exited with {process.returncode} before {url} "
                    f"answered:\n{tail(log)}"
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer 200 within {timeout} s:\n{tail(log)}")
            await asyncio.sleep(0.1)


async def stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0
) -> None:
    """Signal the process we started (by its PID) and reap it, SIGKILL as a last resort."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait, 5)


@contextlib.asynccontextmanager
async def run_process(
    argv: list[str], log: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        try:
            yield process
        finally:
            await stop_process(process)


@dataclass
class LiveGateway:
    url: str
    port: int
    mock_url: str
    mock_app: Any
    process: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, str] = field(
        default_factory=lambda: {"Authorization": f"Bearer {CLIENT_KEY}"}
    )

    @property
    def mock_streams(self) -> list[Any]:
        from gateway.mock import MOCK_STATE

        return list(self.mock_app[MOCK_STATE].streams)


@contextlib.asynccontextmanager
async def live_gateway(
    tmp_path: Path, mock_settings: Any = None, extra_toml: str = "", heartbeat_seconds: float = 15
) -> AsyncIterator[LiveGateway]:
    """The mock upstream in this event loop and `python -m gateway serve` in front of it."""
    from gateway.mock import MockSettings, start_mock

    settings = mock_settings if mock_settings is not None else MockSettings()
    runner, mock_url = await start_mock(port=0, settings=settings)
    try:
        port = free_port()
        config = tmp_path / "gateway.toml"
        config.write_text(
            gateway_toml(port, mock_url.rstrip("/"), extra_toml, heartbeat_seconds)
        )
        log = tmp_path / "gateway.log"
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
        env = subprocess_env({"MOCK_UPSTREAM_KEY": UPSTREAM_KEY})
        async with run_process(argv, log, env=env, cwd=tmp_path) as process:
            url = f"http://127.0.0.1:{port}"
            await wait_http_ok(f"{url}/healthz", process, log)
            yield LiveGateway(url, port, mock_url, runner.app, process, log)
    finally:
        await runner.cleanup()


@dataclass
class StreamResult:
    status: int
    headers: Mapping[str, str]
    lines: list[bytes]
    # time.monotonic() when each line (its newline included) reached the client
    arrivals: list[float]

    def arrivals_of(self, prefix: bytes) -> list[float]:
        return [t for t, line in zip(self.arrivals, self.lines, strict=True)
                if line.startswith(prefix)]  # fmt: skip

    @property
    def data_arrivals(self) -> list[float]:
        return self.arrivals_of(b"data:")


async def stream_chat(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    headers: Mapping[str, str],
    timeout: float = 30.0,
) -> StreamResult:
    """POST a streaming chat completion; timestamp each line as it arrives."""
    lines: list[bytes] = []
    arrivals: list[float] = []
    async with session.post(
        f"{url}/v1/chat/completions",
        json=chat_body(model),
        headers=dict(headers),
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as resp:
        # readline() hands over each line as soon as its newline has arrived.
        while line := await resp.content.readline():
            arrivals.append(time.monotonic())
            lines.append(line.rstrip(b"\r\n"))
        return StreamResult(resp.status, resp.headers.copy(), lines, arrivals)


async def fetch_text(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 200, f"GET {url} -> {resp.status}"
            return await resp.text()
