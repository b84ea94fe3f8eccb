"""Spend through HTTP: each request's cost (header, log line, metrics), per-tenant budgets
(reserve the worst case, settle to the real cost, 429 when it does not fit), and the same
budget shared by two gateway processes through Redis."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from gateway.admission.budget import period_reset
from gateway.auth import hash_key
from gateway.config import PriceSpec
from gateway.dialects import ANTHROPIC, OPENAI, Usage
from gateway.spend import PriceTable
from tests._proc import eventually
from tests.conftest import (
    CLIENT_KEY,
    CLIENT_KEY_B,
    Gateway,
    GatewayFactory,
    Mock,
    auth,
    chat_body,
    free_port,
    raw_config,
    spawn_gateway,
    write_toml,
)

#: 1 and 2 micro-dollars a token
PRICES = {"mock-*": {"input": 1.0, "output": 2.0}, "claude-*": {"input": 1.0, "output": 2.0}}


def tenants(**budget: Any) -> list[dict[str, Any]]:
    return [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), **budget},
            {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B)}]


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def metrics_text(gateway: Gateway) -> str:
    return await (await gateway.client.get("/metrics")).text()



def test_usage_cost_charges_cached_prompt_tokens_at_the_cache_rates() -> None:
    prices = PriceTable.from_config({"m": PriceSpec(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)})
    anthropic = ANTHROPIC.usage_from_body({"usage": {
        "input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200,
        "output_tokens": 10}})
    assert anthropic == Usage(1300, 10, True, 1000, 200)
    # 100*3 + 1000*0.3 + 200*3.75 + 10*15 micro-dollars
    assert prices.usage_cost_micros("m", anthropic) == 300 + 300 + 750 + 150
    openai = OPENAI.usage_from_body({"usage": {
        "prompt_tokens": 1100, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 1000}}})
    assert openai == Usage(1100, 10, True, 1000, 0)
    assert prices.usage_cost_micros("m", openai) == 300 + 300 + 150
    assert prices.usage_cost_micros("other", openai) is None


async def test_non_stream_answer_carries_its_cost(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(prices=PRICES)
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(stream=False), headers=auth())
    assert response.status == 200
    usage = (await response.json())["usage"]
    cost = (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / 1_000_000
    assert cost > 0
    assert response.headers["x-gateway-cost-usd"] == f"{cost:.6f}"
    [line] = gateway.request_logs()
    assert line["cost_usd"] == pytest.approx(cost)
    text = await metrics_text(gateway)
    assert metric(text, "gateway_cost_usd_total", tenant="tenant-a", model="mock-1") == pytest.approx(cost)


async def test_stream_cost_is_in_the_log_line_and_metric(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(prices=PRICES)
    body = chat_body(stream_options={"include_usage": True})
    response = await gateway.client.post("/v1/chat/completions", json=body, headers=auth())
    assert response.status == 200
    await response.read()
    [line] = gateway.request_logs()
    assert line["usage_reported"] is True
    cost = (line["prompt_tokens"] + 2 * line["completion_tokens"]) / 1_000_000
    assert line["cost_usd"] == pytest.approx(cost)
    text = await metrics_text(gateway)
    assert metric(text, "gateway_cost_usd_total", tenant="tenant-a", model="mock-1") == pytest.approx(cost)


async def test_unpriced_model_costs_zero_and_is_counted(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(prices=PRICES)  # gpt-4o is in the built-in table: a name that isn't
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("gpt-nobody-priced", stream=False), headers=auth())
    assert response.status == 200
    assert response.headers.get("x-gateway-cost-usd") is None
    [line] = gateway.request_logs()
    assert (line["cost_usd"], line["unpriced"]) == (0.0, True)
    text = await metrics_text(gateway)
    assert metric(text, "gateway_unpriced_requests_total", model="gpt-*") == 1.0


async def test_cancelled_stream_is_charged_for_what_was_received(
        start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(prices=PRICES)
    body = chat_body("mock-1+tps=20,words=200")
    response = await gateway.client.post("/v1/chat/completions", json=body, headers=auth())
    assert response.status == 200
    await response.content.readuntil(b"\n\n")
    await response.content.readuntil(b"\n\n")
    response.close()
    await eventually(lambda: len(gateway.request_logs()) == 1)
    [line] = gateway.request_logs()
    assert line["outcome"] == "client_disconnected"
    assert line["completion_tokens"] >= 2
    assert line["cost_usd"] == pytest.approx((line["prompt_tokens"] + 2 * line["completion_tokens"]) / 1e6)


async def test_budget_refuses_a_request_whose_worst_case_does_not_fit(
        start_gateway: GatewayFactory) -> None:
    # worst case = prompt estimate * $1/M + 1000 * $2/M > $0.002
    gateway = await start_gateway(prices=PRICES, tenants=tenants(budget_usd=0.002, budget_period="day"))
    before = datetime.now(UTC)
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=1000), headers=auth())
    after = datetime.now(UTC)
    assert response.status == 429
    body = await response.json()
    assert body["error"]["code"] == "insufficient_quota"
    reset = period_reset("day", before)
    assert reset is not None
    retry_after = int(response.headers["Retry-After"])
    assert math.ceil((reset - after).total_seconds()) - 1 <= retry_after <= math.ceil(
        (reset - before).total_seconds()) + 1
    messages = await gateway.client.post(
        "/v1/messages", json={"model": "claude-3-haiku", "max_tokens": 1000,
                              "messages": [{"role": "user", "content": "hi"}]}, headers=auth())
    assert messages.status == 429
    assert (await messages.json())["error"]["type"] == "rate_limit_error"
    # the refused requests were refunded to the rate limiter, and tenant-b has no budget
    other = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(stream=False, max_tokens=1000), headers=auth(CLIENT_KEY_B))
    assert other.status == 200


async def test_budget_settles_to_the_real_cost(start_gateway: GatewayFactory) -> None:
    budget = 0.003  # one worst case (about $0.002) fits at a time; real costs are far less
    gateway = await start_gateway(prices=PRICES, tenants=tenants(budget_usd=budget, budget_period="total"))
    costs = []
    for _ in range(3):
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(stream=False, max_tokens=1000), headers=auth())
        assert response.status == 200
        costs.append(float(response.headers["x-gateway-cost-usd"]))
    text = await metrics_text(gateway)
    remaining = metric(text, "gateway_budget_remaining_usd", tenant="tenant-a")
    assert remaining == pytest.approx(budget - sum(costs))


async def test_two_processes_share_one_budget_through_redis(
        mock: Mock, tmp_path: Path, redis_url: str) -> None:
    """40 concurrent requests, each reserving $0.001 (1000 output tokens at $1/M, input free),
    against a $0.007 budget shared by two gateways: exactly 7 are admitted."""
    prefix = f"test-spend-{uuid.uuid4().hex}:"
    processes = []
    try:
        urls = []
        for name in ("one", "two"):
            port = free_port()
            raw = raw_config(
                mock.url, server={"host": "127.0.0.1", "port": port},
                ratelimit={"backend": "redis", "redis_url": redis_url, "key_prefix": prefix},
                tenants=tenants(budget_usd=0.007, budget_period="day"))
            path = write_toml(tmp_path / f"{name}.toml", raw)
            with path.open("a") as toml:
                toml.write('[prices]\n"mock-*" = { input = 0.0, output = 1.0 }\n')
            processes.append(spawn_gateway(path, tmp_path, port, name=name))
            urls.append(processes[-1].url)
        body = chat_body("mock-1+delay=3", stream=False, max_tokens=1000)
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> tuple[int, dict[str, Any]]:
                async with session.post(f"{urls[i % 2]}/v1/chat/completions", json=body,
                                        headers=auth(), timeout=aiohttp.ClientTimeout(total=30)) as r:
                    return r.status, await r.json()

            results = await asyncio.gather(*(one(i) for i in range(40)))
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] * 7 + [429] * 33
        assert {b["error"]["code"] for s, b in results if s == 429} == {"insufficient_quota"}
    finally:
        for process in processes:
            process.proc.kill()
            process.proc.wait(timeout=10)
        client = redis.asyncio.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
