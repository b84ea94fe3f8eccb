"""An upstream that reports usage no model reaches (2^63-1 tokens): the gateway clamps it to
`MAX_USAGE_TOKENS`, charges the clamp (memory and Redis budgets alike: the Redis settlement
used to fail and charge nothing) and logs the anomaly. A hostile stand-in upstream on a real
socket, the gateway on another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.admission.anomaly import MAX_USAGE_TOKENS
from gateway.auth import hash_key
from tests.conftest import CLIENT_KEY, GatewayFactory, auth, chat_body

HUGE = 2**63 - 1
BUDGET = 10_000.0
#: $1/M input, $2/M output: the clamp's cost in micro-dollars is exact
CLAMPED_COST = (MAX_USAGE_TOKENS * 1 + MAX_USAGE_TOKENS * 2) / 1_000_000


async def _huge_usage(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    usage = {"prompt_tokens": HUGE, "completion_tokens": HUGE, "total_tokens": HUGE}
    if body.get("stream") is not True:
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                         "finish_reason": "stop"}], "usage": usage})
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": usage},
    ]
    stream = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    return web.Response(body=stream, content_type="text/event-stream")


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _huge_usage)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


def sections(upstream: str, ratelimit: dict[str, Any]) -> dict[str, Any]:
    return {
        "upstreams": [{"name": "hostile", "dialect": "openai", "base_url": upstream,
                       "api_key_env": "MOCK_OPENAI_KEY", "models": ["mock-*"], "max_retries": 0}],
        "prices": {"mock-*": {"input": 1.0, "output": 2.0}},
        "tenants": [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": BUDGET,
                     "tokens_per_minute": 1_000_000}],
        "ratelimit": ratelimit,
    }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_huge_usage_is_clamped_charged_and_logged(
        start_gateway: GatewayFactory, hostile: str, request: pytest.FixtureRequest,
        backend: str, stream: bool) -> None:
    ratelimit: dict[str, Any] = {"backend": backend}
    if backend == "redis":  # a private redis-server of this test's own
        ratelimit |= {"redis_url": request.getfixturevalue("redis_url"), "fail_open": False}
    gateway = await start_gateway(**sections(hostile, ratelimit))
    response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=stream),
                                         headers=auth())
    assert response.status == 200
    await response.read()
    # Charged the clamp: the budget's remaining, as the settling backend reports it.
    remaining = await gateway.metric("gateway_budget_remaining_usd", tenant="tenant-a")
    assert remaining == pytest.approx(BUDGET - CLAMPED_COST, abs=1e-6)
    lines = gateway.log_lines()
    anomaly = [line for line in lines if line["event"] == "usage_anomaly"]
    assert len(anomaly) == 1
    assert anomaly[0]["reported"]["prompt_tokens"] == HUGE
    assert anomaly[0]["clamped_to"] == MAX_USAGE_TOKENS and anomaly[0]["tenant"] == "tenant-a"
    (line,) = gateway.request_logs()
    assert line["cost_usd"] == pytest.approx(CLAMPED_COST)
    assert [a["cost_usd"] for a in line["attempts"]] == [pytest.approx(CLAMPED_COST)]
    assert line["prompt_tokens"] == line["completion_tokens"] == MAX_USAGE_TOKENS
    assert not [line for line in lines if line["event"] in ("ratelimit_backend_error",
                                                            "budget_settle_failed")]


async def test_a_budget_settlement_redis_never_saw_is_said() -> None:
    from gateway.admission.budget import Reservation
    from gateway.admission.budget_redis import RedisBudget

    lost: list[tuple[str, int]] = []
    budget = RedisBudget("redis://127.0.0.1:1/0", fail_open=True, timeout=0.5,
                         on_unsettled=lambda tenant, micros: lost.append((tenant, micros)))
    try:
        await budget.settle(Reservation("tenant-a", "day", "2026-01-01", 10, 100), 0.25)
    finally:
        await budget.close()
    assert lost == [("tenant-a", 250_000)]
