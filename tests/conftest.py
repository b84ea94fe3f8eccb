"""Shared fixtures: the mock upstream and the gateway in front of it, over real sockets."""

from __future__ import annotations

import io
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.config import toml_text
from bench.procs import gateway_argv as gateway_argv
from bench.procs import gateway_env
from gateway.app import build_app
from gateway.auth import hash_key
from gateway.config import Config, config_from_dict
from gateway.logs import make_logger
from gateway.mock import MOCK_STATE, MockSettings, MockState, start_mock
from tests._metrics import metric_value
from tests._proc import Child, blocking, free_port, http_ok, port_open, spawn

pytest_plugins = ["tests.conftest_redis"]

UPSTREAM_KEY = "sk-upstream-SECRET-0123456789"
ANTHROPIC_UPSTREAM_KEY = "sk-ant-upstream-SECRET-9876543210"
CLIENT_KEY = "gw-client-A-secret-key"
CLIENT_KEY_B = "gw-client-B-secret-key"
UPSTREAM_ENV = {"MOCK_OPENAI_KEY": UPSTREAM_KEY, "MOCK_ANTHROPIC_KEY": ANTHROPIC_UPSTREAM_KEY}
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Mock:
    runner: web.AppRunner
    url: str

    @property
    def state(self) -> MockState:
        return self.runner.app[MOCK_STATE]


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    # The mock checks the OpenAI key; both upstream entries point at it, so it also accepts
    # the Anthropic key when asked to (see `anthropic_mock`).
    runner, url = await start_mock(settings=MockSettings(api_key=None, words=12))
    yield Mock(runner, url)
    await runner.cleanup()


def upstream_spec(name: str, base_url: str, *, dialect: str = "openai", **fields: Any) -> dict[str, Any]:
    """One `[[upstreams]]` entry of a test config, with the key env variable the test env sets for
    its dialect (the mock's OpenAI base URL is `f"{mock.url}/v1"`, its Anthropic one `mock.url`)."""
    key = "MOCK_OPENAI_KEY" if dialect == "openai" else "MOCK_ANTHROPIC_KEY"
    return {"name": name, "dialect": dialect, "base_url": base_url, "api_key_env": key, **fields}


def raw_config(mock_url: str, **sections: Any) -> dict[str, Any]:
    """A test config: two upstreams on the mock (one per dialect), two tenants."""
    raw: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "heartbeat_seconds": 15},
        "limits": {},
        "ratelimit": {},
        "upstreams": [
            upstream_spec("mock", f"{mock_url}/v1", models=["mock-1", "mock-*", "gpt-*"],
                          backoff_base_seconds=0.01, backoff_max_seconds=0.5),
            upstream_spec("mock-anthropic", mock_url, dialect="anthropic",
                          models=["claude-3-haiku", "claude-*"],
                          backoff_base_seconds=0.01, backoff_max_seconds=0.5),
        ],
        "tenants": [
            {"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "priority": 0},
            {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B), "priority": 10},
        ],
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **value}
        else:
            raw[name] = value
    return raw


def make_config(mock_url: str, **sections: Any) -> Config:
    return config_from_dict(raw_config(mock_url, **sections), UPSTREAM_ENV, source="<test>")


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    config: Config
    log: io.StringIO

    def url(self, path: str = "") -> str:
        return str(self.client.make_url(path))

    def log_lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]

    def request_logs(self) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == "request"]

    async def metrics(self) -> str:
        response = await self.client.get("/metrics")
        assert response.status == 200
        return await response.text()

    async def metric(self, name: str, **labels: str) -> float:
        """One value of /metrics, parsed (see `tests._metrics.metric_value`)."""
        return metric_value(await self.metrics(), name, **labels)


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start_gateway(aiohttp_client: Any, mock: Mock) -> GatewayFactory:
    """`await start_gateway(limits={...}, ...)`: a gateway on a real socket before the mock."""

    async def start(**sections: Any) -> Gateway:
        config = make_config(mock.url, **sections)
        log = io.StringIO()
        app = build_app(config, make_logger(log))
        client = await aiohttp_client(app)
        return Gateway(client, config, log)

    return start


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> Gateway:
    return await start_gateway()


def auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat_body(model: str = "mock-1", *, stream: bool = True, content: str = "hello there",
              **extra: Any) -> dict[str, Any]:
    return {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": content}], **extra}


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    """A test config as TOML (the bench's tiny writer: tables, arrays of tables, scalars)."""
    path.write_text(toml_text(raw))
    return path


@dataclass
class Process:
    """A `python -m gateway serve` we started (`tests._proc.Child` underneath)."""

    proc: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    @property
    def child(self) -> Child:
        return Child(self.proc, self.stderr_path)

    async def exited(self, timeout: float = 15) -> int:
        """Its exit code once it exits (bounded; the wait runs in a thread)."""
        return await self.child.exited(timeout)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        return await self.child.stop(sig, timeout)


async def start_gateway_process(config_path: Path, tmp_path: Path, port: int,
                                env: dict[str, str] | None = None, name: str = "gateway") -> Process:
    """THE way a test starts `python -m gateway serve` (the live and deployment tests too, see
    `tests/_live.py`): a real subprocess with the upstream keys in its env and none of this
    process's `GATEWAY_*` overrides (only `env`'s), awaited (bounded) until `/healthz` answers."""
    child = spawn(gateway_argv(config_path), tmp_path / f"{name}.stderr",
                  env=gateway_env({**UPSTREAM_ENV, **(env or {})}), cwd=REPO)
    try:
        await child.ready(port_open(port), what=f"listening on port {port}")
        await child.ready(http_ok(f"http://127.0.0.1:{port}/healthz"), what="answering /healthz")
    except BaseException:
        child.stop_blocking(signal.SIGKILL)
        raise
    return Process(child.proc, f"http://127.0.0.1:{port}", child.log)


def spawn_gateway(config_path: Path, tmp_path: Path, port: int, env: dict[str, str] | None = None,
                  name: str = "gateway") -> Process:
    """`start_gateway_process` for sync callers (it runs on a private loop in a thread)."""
    return blocking(lambda: start_gateway_process(config_path, tmp_path, port, env, name))


Spawn = Callable[..., Process]


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[Spawn]:
    """`spawned(mock_url, name=..., server={...}, ...)`: `python -m gateway serve` on a free
    port with a test config; each one is stopped by its PID at teardown (SIGTERM, then SIGKILL)."""
    started: list[Process] = []

    def spawn_one(mock_url: str, *, name: str = "gateway", **sections: Any) -> Process:
        port = free_port()
        server = {"host": "127.0.0.1", "port": port, **sections.pop("server", {})}
        raw = raw_config(mock_url, server=server, **sections)
        started.append(spawn_gateway(write_toml(tmp_path / f"{name}.toml", raw), tmp_path, port,
                                     name=name))
        return started[-1]

    yield spawn_one
    for gateway in started:
        gateway.child.stop_blocking(timeout=10)
