"""Live reload of a real `llm-gateway serve` process by SIGHUP: streams in flight finish on
their config byte for byte, a new tenant and a rotated key work at once, and a broken file
changes nothing and is reported in one line."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import hash_key
from tests._proc import eventually
from tests.conftest import (
    CLIENT_KEY,
    CLIENT_KEY_B,
    Mock,
    Process,
    Spawn,
    auth,
    chat_body,
    raw_config,
    write_toml,
)

NEW_KEY = "gw-client-A-rotated-key"
NEW_TENANT_KEY = "gw-client-C-new-tenant"
#: a paced answer: long enough to be in flight across the reload
SLOW = "mock-1+tps=25,words=100"


def events(process: Process, name: str) -> list[dict[str, Any]]:
    lines = []
    for line in process.stderr().splitlines():
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("event") == name:
            lines.append(data)
    return lines



def normalized(body: bytes) -> bytes:
    """The stream without its per-request id and time (the mock numbers and dates answers)."""
    return re.sub(rb'"created":\d+', b'"created":0', re.sub(rb'"id":"[^"]*"', b'"id":""', body))


def reloads(text: str, result: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gateway_config_reloads_total" and sample.labels["result"] == result:
                return float(sample.value)
    return 0.0


async def test_sighup_swaps_config_under_streams_in_flight(
        mock: Mock, spawned: Spawn, tmp_path: Path) -> None:
    gateway = spawned(mock.url, name="reload")
    port = int(gateway.url.rsplit(":", 1)[1])
    path = tmp_path / "reload.toml"
    async with aiohttp.ClientSession() as session:
        reference = await (await session.post(
            f"{mock.url}/v1/chat/completions", json=chat_body(SLOW))).read()
        responses = [await session.post(f"{gateway.url}/v1/chat/completions", json=chat_body(SLOW),
                                        headers=auth()) for _ in range(20)]
        firsts = [await r.content.readuntil(b"\n\n") for r in responses]  # all 20 are streaming

        # tenant-a's key is rotated (the old one stays as an extra key), tenant-c is new
        raw = raw_config(mock.url, server={"host": "127.0.0.1", "port": port}, tenants=[
            {"name": "tenant-a", "key_sha256": hash_key(NEW_KEY), "extra_key_sha256": [hash_key(CLIENT_KEY)]},
            {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B)},
            {"name": "tenant-c", "key_sha256": hash_key(NEW_TENANT_KEY)},
        ])
        write_toml(path, raw)
        os.kill(gateway.proc.pid, signal.SIGHUP)
        await eventually(lambda: len(events(gateway, "config_reloaded")) == 1)
        for key in (NEW_KEY, NEW_TENANT_KEY, CLIENT_KEY):
            fresh = await session.post(f"{gateway.url}/v1/chat/completions",
                                       json=chat_body(stream=False), headers=auth(key))
            assert fresh.status == 200, key
        assert sum(1 for s in mock.state.streams if s.completed) == 1  # only the reference yet
        bodies = [first + await r.read() for first, r in zip(firsts, responses, strict=True)]
        assert [normalized(b) for b in bodies] == [normalized(reference)] * 20

        # a broken file changes nothing and says why, once
        path.write_text("[server\nport = 1\n")
        os.kill(gateway.proc.pid, signal.SIGHUP)
        await eventually(lambda: len(events(gateway, "config_reload_failed")) == 1)
        [failed] = events(gateway, "config_reload_failed")
        assert failed["error"].startswith(f"{path}: not valid TOML")
        fresh = await session.post(f"{gateway.url}/v1/chat/completions",
                                   json=chat_body(stream=False), headers=auth(NEW_TENANT_KEY))
        assert fresh.status == 200
        text = await (await session.get(f"{gateway.url}/metrics")).text()
        assert (reloads(text, "ok"), reloads(text, "failed")) == (1.0, 1.0)
    assert gateway.proc.poll() is None
