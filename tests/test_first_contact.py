"""What a new user trips on (issue 21, item 6): `--version`, a taken port said in one plain
line, key files written 0600 outside the repo (and `.gitignore` covering keys, local configs
and state), and a per-stream output tokens/s histogram."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import orjson
import pytest

from bench.config import toml_text
from gateway import __version__
from tests._metrics import metric_value
from tests._proc import run_module
from tests.conftest import REPO, GatewayFactory, auth, chat_body
from tests.test_readme import README, fenced_blocks


async def test_version() -> None:
    status, out, err = await run_module("gateway", "--version", cwd=REPO, timeout=30)
    assert (status, out.decode().strip(), err) == (0, f"llm-gateway {__version__}", b"")


def _plain_lines(stderr: bytes) -> list[str]:
    """The lines a person reads: everything on stderr that is not a JSON log line."""
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    return [line for line in lines if not line.startswith("{")]


async def test_a_taken_port_is_one_plain_line_naming_it_and_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = await run_module("gateway", "serve", "--demo", "--port", str(port),
                                          cwd=REPO, timeout=60)
    assert status == 1
    (line,) = _plain_lines(err)
    assert f"port {port}" in line and "already in use" in line and "--port" in line
    logged = [orjson.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
    assert any(x["event"] == "startup_failed" and x["port"] == port for x in logged)
    assert "Traceback" not in err.decode()


async def test_hash_key_new_writes_a_0600_key_and_prints_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "app.key"
    status, out, _ = await run_module("gateway", "hash-key", "--new", str(path), cwd=REPO, timeout=30)
    assert status == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert len(key) >= 64 and out.decode().strip() == hashlib.sha256(key.encode()).hexdigest()
    again, _, err = await run_module("gateway", "hash-key", "--new", str(path), cwd=REPO, timeout=30)
    assert again == 2 and b"not overwritten" in err and path.read_text().strip() == key


def test_the_readme_makes_the_key_outside_the_repo_readable_by_its_owner_only(tmp_path: Path) -> None:
    (block,) = [b for b in fenced_blocks(README, "sh") if "hash-key --new" in b]
    assert "tee" not in block
    env = {**os.environ, "HOME": str(tmp_path)}
    run = subprocess.run(["bash", "-ec", block], cwd=REPO, env=env, capture_output=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stderr
    (key_file,) = (tmp_path / ".config" / "llm-gateway").glob("*.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert REPO not in key_file.parents
    printed = run.stdout.decode().strip()
    assert printed == hashlib.sha256(key_file.read_text().strip().encode()).hexdigest()


def test_gitignore_covers_keys_local_configs_and_state() -> None:
    ignored = ["my-app.key", "deploy/app-a.key", "gateway.toml", "dev.local.toml", ".env",
               "deploy/.env", "gateway-state.db", "gateway-state.db-wal", "gateway-state.db-shm"]
    for name in ignored:
        check = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", name],
                               check=False, timeout=30)
        assert check.returncode == 0, f"{name} is not ignored"
    kept = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "--no-index",
                           "deploy/gateway.toml"], check=False, timeout=30)
    assert kept.returncode == 1  # the shipped example config stays tracked


async def test_each_stream_observes_its_output_tokens_per_second(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    response = await gateway.client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    assert response.status == 200
    await response.read()
    plain = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False), headers=auth())
    assert plain.status == 200  # not a stream: not observed
    text = await gateway.metrics()
    name = "gateway_stream_output_tokens_per_second"
    labels = {"tenant": "tenant-a", "model": "mock-1"}
    assert metric_value(text, f"{name}_count", **labels) == 1
    (line,) = [r for r in gateway.request_logs() if r["stream"]]
    generating = (line["duration_ms"] - line["ttfb_ms"]) / 1000
    # The sum is this stream's completion tokens over its time after the first data line (the
    # log line's duration and ttfb are the same measurements, rounded to the microsecond).
    observed = metric_value(text, f"{name}_sum", **labels)
    assert line["completion_tokens"] > 0
    assert observed == pytest.approx(line["completion_tokens"] / generating, rel=0.02)  # the microsecond rounding
    assert set(re.findall(rf'{name}_count{{([^}}]*)}}', text)) == {'model="mock-1",tenant="tenant-a"'}


@pytest.mark.redis
async def test_a_taken_port_with_workers_is_one_plain_line_too(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(toml_text({
        "server": {"host": "127.0.0.1", "workers": 2},
        "ratelimit": {"backend": "redis", "redis_url": redis_url},
        "upstreams": [{"name": "m", "dialect": "openai", "base_url": "http://127.0.0.1:9/v1",
                       "models": ["m-1"]}],
        "tenants": [{"name": "t", "key_sha256": "a" * 64}],
    }))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = await run_module("gateway", "serve", "--config", str(config), "--port",
                                          str(port), cwd=REPO, timeout=90)
    assert status == 1
    (line,) = _plain_lines(err)
    assert f"port {port}" in line and "--port" in line
    assert "Traceback" not in err.decode()
