"""`workers = 2`: two processes on one port, limits shared through Redis, /metrics summed
over both, one `started` line, and drain on SIGTERM across all of them."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests._proc import eventually
from tests.conftest import CLIENT_KEY, Mock, Spawn, chat_body

pytestmark = pytest.mark.redis


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            cmdline = (entry / "cmdline").read_bytes() if entry.exists() else b""
            # multiprocessing's resource tracker is a child too: workers run spawn_main
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def _requests_total(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("gateway_requests_total{") and 'route="chat_completions"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_two_workers_share_the_port_sum_metrics_and_drain(
    mock: Mock, spawned: Spawn, redis_url: str, tmp_path: Path,
) -> None:
    gateway = spawned(mock.url, server={"workers": 2},
                      ratelimit={"backend": "redis", "redis_url": redis_url,
                                 "key_prefix": f"gw-test-workers-{os.getpid()}:"})
    pid = gateway.proc.pid
    try:
        # both workers up (the parent listens on nothing itself)
        workers = await eventually(lambda: found if len(found := _children(pid)) >= 2 else None,
                                   timeout=5, what="two workers")
        # ... and both serving: one worker can answer everything while the other still starts
        # (a loaded machine), and a SIGTERM before its signal handlers are set ends it at once.
        await eventually(lambda: '"worker_started"' in gateway.stderr()
                         and '"started"' in gateway.stderr(), timeout=20, what="both workers started")
        headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
        # A fresh connection per request, so the kernel spreads them over both workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for _ in range(20):
                async with http.post(f"{gateway.url}/v1/chat/completions", headers=headers,
                                     json=chat_body(stream=True)) as response:
                    assert response.status == 200
                    assert b"[DONE]" in await response.read()
            async def settled() -> bool:  # each worker publishes its slot gauge every 0.5 s
                async with http.get(f"{gateway.url}/metrics") as response:
                    text = await response.text()
                return _requests_total(text) == 20 and "gateway_active_streams 0.0" in text

            await eventually(settled, timeout=10, interval=0.1, what="both workers' gauges at rest")
            for _ in range(6):  # any worker's /metrics reports the sum over both
                async with http.get(f"{gateway.url}/metrics") as response:
                    text = await response.text()
                assert _requests_total(text) == 20
            assert "gateway_active_streams 0.0" in text
    finally:
        os.kill(pid, signal.SIGTERM)
        code = await asyncio.to_thread(gateway.proc.wait, 30)
    assert code == 0
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]  # drained and gone
    lines = [orjson.loads(line) for line in gateway.stderr().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.count("started") == 1 and events.count("worker_started") == 1, gateway.stderr()[-6000:]
    assert next(line for line in lines if line["event"] == "workers_started")["workers"] == 2


async def test_an_admin_reload_reaches_every_worker(
    mock: Mock, spawned: Spawn, redis_url: str, tmp_path: Path,
) -> None:
    from gateway.auth import hash_key

    gateway = spawned(mock.url, server={"workers": 2, "admin_key_sha256": hash_key("admin-key")},
                      ratelimit={"backend": "redis", "redis_url": redis_url})
    # both workers serving (each has its signal handlers from then on)
    await eventually(lambda: '"event":"started"' in gateway.stderr()
                     and '"event":"worker_started"' in gateway.stderr(), timeout=20)
    path = tmp_path / "gateway.toml"
    text = path.read_text()
    assert "requests_per_minute" not in text
    # tenant-a (the first tenant) gets a limit of its own: 77 requests a minute
    path.write_text(text.replace('name = "tenant-a"', 'name = "tenant-a"\nrequests_per_minute = 77', 1))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with http.post(f"{gateway.url}/admin/reload",
                             headers={"Authorization": "Bearer admin-key"}) as response:
            assert response.status == 200
        # each worker applies the supervisor's SIGHUP (and says so)
        await eventually(lambda: gateway.stderr().count('"event":"config_reloaded"') == 2,
                         timeout=10, what="both workers reloaded")
        limits = set()
        for _ in range(16):  # fresh connections: the kernel spreads them over both workers
            async with http.post(f"{gateway.url}/v1/chat/completions", json=chat_body(stream=False),
                                 headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as response:
                assert response.status == 200
                limits.add(response.headers["x-ratelimit-limit-requests"])
        assert limits == {"77"}
        async with http.get(f"{gateway.url}/metrics") as response:
            text = await response.text()
    ok = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith('gateway_config_reloads_total{result="ok"}'))
    assert ok == 2  # once per worker
