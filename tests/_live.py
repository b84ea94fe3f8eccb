"""Real processes for the deployment tests: the gateway as a subprocess of
`python -m gateway serve` in front of the in-process mock upstream, plus the
Debian binaries (nginx, prometheus, promtool) the tests put around it.

Everything listens on 127.0.0.1, waits are bounded, and only processes
started here are stopped, by their own PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests._proc import Child, http_ok, running
from tests._proc import tail as tail  # re-exported: the live tests print logs with it
from tests.conftest import CLIENT_KEY, REPO, UPSTREAM_KEY, chat_body, free_port, start_gateway_process

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


async def wait_http_ok(
    url: str, process: subprocess.Popen[bytes] | Child, log: Path, timeout: float = START_TIMEOUT
) -> None:
    """Wait (bounded) until url answers 200; fail early if the process died."""
    child = process if isinstance(process, Child) else Child(process, log)
    try:
        await child.ready(http_ok(url), what=f"{url} answering 200", timeout=timeout)
    except RuntimeError as exc:
        pytest.fail(str(exc))


async def stop_process(
    process: subprocess.Popen[bytes] | Child, sig: int = signal.SIGTERM, timeout: float = 20.0
) -> None:
    """Signal the process we started (by its PID) and reap it, SIGKILL as a last resort."""
    child = process if isinstance(process, Child) else Child(process, Path(os.devnull))
    await child.stop(sig, timeout)


#: `async with run_process(argv, log, env=..., cwd=...) as child`: spawned, stopped on exit.
run_process = running


@dataclass
class LiveGateway:
    url: str
    port: int
    mock_url: str
    mock_app: Any
    process: Child
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
        # The one process starter (conftest.start_gateway_process); the mock checks no key.
        try:
            process = await start_gateway_process(
                config, tmp_path, port, env={"MOCK_UPSTREAM_KEY": UPSTREAM_KEY})
        except RuntimeError as exc:
            pytest.fail(str(exc))
        try:
            yield LiveGateway(process.url, port, mock_url, runner.app, process.child,
                              process.stderr_path)
        finally:
            await process.stop()
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
    """POST a streaming chat completion; timestamp each line as it arrives. It asks for usage,
    so every upstream event reaches it (without, the gateway hides the usage-only last chunk
    it asked the upstream for)."""
    lines: list[bytes] = []
    arrivals: list[float] = []
    async with session.post(
        f"{url}/v1/chat/completions",
        json=chat_body(model, stream_options={"include_usage": True}),
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
