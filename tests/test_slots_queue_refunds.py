"""Hardening through real sockets: every wait bounded, slots for every upstream call,
priority under a full queue, fair charging, and no 500 from bad input."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.admission.limiter import format_reset, parse_reset
from gateway.auth import hash_key
from tests._proc import eventually
from tests.conftest import (
    CLIENT_KEY,
    CLIENT_KEY_B,
    REPO,
    UPSTREAM_ENV,
    Gateway,
    GatewayFactory,
    auth,
    chat_body,
    raw_config,
    write_toml,
)


async def metric_text(gateway: Gateway) -> str:
    return await (await gateway.client.get("/metrics")).text()


async def until_metric(gateway: Gateway, line: str) -> None:
    """Bounded poll of /metrics until `line` shows (queue depth and slots have no event)."""

    async def shown() -> bool:
        return line in await metric_text(gateway)

    await eventually(shown, timeout=5, what=f"{line!r} in /metrics")


async def post(gateway: Gateway, body: dict[str, Any], key: str = CLIENT_KEY,
               path: str = "/v1/chat/completions") -> aiohttp.ClientResponse:
    response = await gateway.client.post(path, json=body, headers=auth(key))
    await response.read()
    return response


async def test_a_slow_non_stream_request_holds_a_slot_too(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 1, "max_queue": 0})
    slow = asyncio.ensure_future(post(gateway, chat_body("mock-1+delay=1.5", stream=False)))
    await until_metric(gateway, "gateway_active_streams 1.0")
    refused = await post(gateway, chat_body())
    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "overloaded"
    assert (await asyncio.wait_for(slow, 10)).status == 200
    assert 'gateway_shed_total{reason="queue_full"} 1.0' in await metric_text(gateway)


async def test_full_queue_a_higher_priority_arrival_displaces_the_lowest_waiter(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 1, "max_queue": 1,
                                          "queue_timeout_seconds": 10})
    holder = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=10,words=8"), headers=auth())
    await holder.content.readany()
    low = asyncio.ensure_future(post(gateway, chat_body()))  # tenant-a, priority 0
    await until_metric(gateway, "gateway_queue_depth 1.0")
    high = asyncio.ensure_future(post(gateway, chat_body(), key=CLIENT_KEY_B))  # priority 10
    displaced = await asyncio.wait_for(low, 10)
    assert displaced.status == 503 and "Retry-After" in displaced.headers
    await holder.read()
    assert (await asyncio.wait_for(high, 10)).status == 200
    assert 'gateway_shed_total{reason="queue_full"} 1.0' in await metric_text(gateway)


async def test_requests_that_no_upstream_answered_are_refunded_in_full(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(
        tenants=[{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "requests_per_minute": 2,
                  "tokens_per_minute": 10_000}])
    for _ in range(3):  # over the 2/minute limit, but none was charged
        failed = await post(gateway, chat_body("mock-1+status=503", max_tokens=1000))
        assert failed.status == 502
    ok = await post(gateway, chat_body(max_tokens=1000))
    assert ok.status == 200
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert int(ok.headers["x-ratelimit-remaining-tokens"]) >= 10_000 - 1100


async def test_a_shed_request_is_refunded(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(
        limits={"max_concurrent_streams": 1, "max_queue": 0},
        tenants=[{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "requests_per_minute": 2},
                 {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B)}])
    holder = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=10,words=8"), headers=auth(CLIENT_KEY_B))
    await holder.content.readany()
    for _ in range(3):
        assert (await post(gateway, chat_body())).status == 503
    await holder.read()
    ok = await post(gateway, chat_body())
    assert ok.status == 200 and ok.headers["x-ratelimit-remaining-requests"] == "1"


ANTHROPIC_RATE = [f"anthropic-ratelimit-{k}-{f}" for k in ("requests", "tokens")
                  for f in ("limit", "remaining", "reset")]


def anthropic_body(stream: bool) -> dict[str, Any]:
    return {"model": "claude-3-haiku", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}


async def test_messages_answers_carry_anthropic_ratelimit_headers(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(
        tenants=[{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "requests_per_minute": 2,
                  "tokens_per_minute": 10_000},
                 {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B)}])
    before = datetime.now(UTC).replace(microsecond=0)
    streamed = await post(gateway, anthropic_body(True), path="/v1/messages")
    plain = await post(gateway, anthropic_body(False), path="/v1/messages")
    refused = await post(gateway, anthropic_body(False), path="/v1/messages")
    assert (streamed.status, plain.status, refused.status) == (200, 200, 429)
    for response in (streamed, plain, refused):
        assert all(h in response.headers for h in ANTHROPIC_RATE), response.headers
        assert response.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert response.headers["anthropic-ratelimit-tokens-limit"] == "10000"
        reset = datetime.fromisoformat(response.headers["anthropic-ratelimit-requests-reset"])
        assert before < reset <= before + timedelta(seconds=62)
    assert streamed.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    chat = await post(gateway, chat_body(), key=CLIENT_KEY_B)
    assert chat.status == 200 and "x-ratelimit-limit-requests" in chat.headers
    assert [h for h in chat.headers if h.startswith("anthropic-ratelimit-")] == []


@given(st.floats(min_value=0, max_value=100_000, allow_nan=False))
def test_parse_reset_reads_back_what_format_reset_wrote(seconds: float) -> None:
    parsed = parse_reset(format_reset(seconds))
    assert parsed is not None
    assert parsed == pytest.approx(math.ceil(seconds * 1000) / 1000, abs=1e-9)


def test_serve_refuses_a_tenant_key_printed_in_the_docs(tmp_path: Path) -> None:
    raw = raw_config("http://127.0.0.1:9", tenants=[
        {"name": "docs", "key_sha256": "e256cb66cfe86089db8521b7c249048dd5891d7cf7d301424d6f238ec97dce13"}])
    path = write_toml(tmp_path / "gw.toml", raw)
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                          capture_output=True, timeout=60, cwd=REPO, env={**os.environ, **UPSTREAM_ENV})
    assert done.returncode == 2
    lines = [orjson.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert [line["event"] for line in lines] == ["config_error"]
    assert "printed in the docs" in lines[0]["error"]
