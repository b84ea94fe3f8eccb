"""Admission through HTTP: tenant buckets (memory and Redis), the stream queue, shedding."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway.auth import hash_key
from tests._proc import eventually, free_port
from tests.conftest import (
    CLIENT_KEY,
    CLIENT_KEY_B,
    Gateway,
    GatewayFactory,
    Mock,
    Spawn,
    auth,
    chat_body,
)

RATE_HEADERS = [f"x-ratelimit-{f}-{k}" for k in ("requests", "tokens") for f in ("limit", "remaining", "reset")]


def tenants(**limits: Any) -> list[dict[str, Any]]:
    return [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), **limits},
            {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B), "priority": 10}]


async def stream(gateway: Gateway, model: str = "mock-1", key: str = CLIENT_KEY, **extra: Any) -> aiohttp.ClientResponse:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(model, **extra), headers=auth(key))
    await response.read()
    return response


async def gauge_is(gateway: Gateway, name: str, value: float) -> bool:
    return await gateway.metric(name) == value


async def test_requests_bucket_admits_two_then_429(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=tenants(requests_per_minute=2))
    first, second, third = [await stream(gateway) for _ in range(3)]
    assert (first.status, second.status, third.status) == (200, 200, 429)
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    for response in (first, second, third):
        assert all(h in response.headers for h in RATE_HEADERS)
    assert third.headers["x-ratelimit-limit-requests"] == "2"
    retry_after = int(third.headers["Retry-After"])
    assert 1 <= retry_after <= 30  # one request refills in 30 s at 2/minute
    body = await third.json()
    assert body["error"]["type"] == "rate_limit_error"
    assert await gateway.metric("gateway_ratelimited_total", kind="requests", tenant="tenant-a") == 1
    # the other tenant has its own buckets
    assert (await stream(gateway, key=CLIENT_KEY_B)).status == 200


async def test_429_on_the_messages_route_is_anthropic_shaped(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=tenants(requests_per_minute=1))
    for expected in (200, 429):
        response = await gateway.client.post(
            "/v1/messages", json=chat_body("claude-x", stream=False, max_tokens=5),
            headers={"x-api-key": CLIENT_KEY})
        body = await response.json()
        assert response.status == expected
    assert body == {"type": "error", "error": {"type": "rate_limit_error", "message": body["error"]["message"]}}


async def test_tokens_bucket_refuses_when_the_reservation_does_not_fit(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=tenants(tokens_per_minute=1000))
    first = await gateway.client.post(  # holds its 700-token reservation while it streams
        "/v1/chat/completions", json=chat_body("mock-1+tps=10", max_tokens=700), headers=auth())
    assert first.status == 200
    await first.content.readany()
    second = await stream(gateway, max_tokens=700)  # 700 + prompt > what is left
    first.close()
    assert second.status == 429
    assert "tokens" in (await second.json())["error"]["message"]
    assert await gateway.metric("gateway_ratelimited_total", kind="tokens", tenant="tenant-a") == 1


async def test_usage_settles_and_refunds_the_unused_reservation(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=tenants(tokens_per_minute=10_000))
    first = await stream(gateway, max_tokens=4000, stream_options={"include_usage": True})
    reserved_left = int(first.headers["x-ratelimit-remaining-tokens"])
    assert reserved_left <= 10_000 - 4000
    # The answer used 12 completion tokens: the rest came back before the next admission.
    second = await stream(gateway, max_tokens=1)
    left = int(second.headers["x-ratelimit-remaining-tokens"])
    assert left > reserved_left + 3900
    log = gateway.request_logs()[0]
    assert log["completion_tokens"] == 12 and log["usage_reported"] is True


async def test_second_stream_waits_for_the_only_slot(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 1, "queue_timeout_seconds": 5})
    slow = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=20,words=6"), headers=auth())
    await slow.content.readany()
    waiting = asyncio.ensure_future(stream(gateway))
    await eventually(lambda: gauge_is(gateway, "gateway_queue_depth", 1), what="one request queued")
    assert await gateway.metric("gateway_active_streams") == 1
    assert not waiting.done()
    await slow.read()
    second = await asyncio.wait_for(waiting, 10)
    assert second.status == 200
    assert len(mock.state.streams) == 2
    assert mock.state.streams[1].sent_at[0] >= mock.state.streams[0].closed_at  # type: ignore[operator]
    log = gateway.request_logs()[-1]
    assert log["queue_wait_ms"] > 0


async def test_full_queue_and_queue_timeout_shed_with_503(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 1, "max_queue": 1,
                                          "queue_timeout_seconds": 0.3})
    slow = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=5,words=10"), headers=auth())
    await slow.content.readany()
    queued = asyncio.ensure_future(stream(gateway))
    await eventually(lambda: gauge_is(gateway, "gateway_queue_depth", 1), what="one request queued")
    overflow = await stream(gateway)
    assert overflow.status == 503 and "Retry-After" in overflow.headers
    timed_out = await asyncio.wait_for(queued, 5)
    assert timed_out.status == 503 and "Retry-After" in timed_out.headers
    slow.close()
    assert await gateway.metric("gateway_shed_total", reason="queue_full") == 1
    assert await gateway.metric("gateway_shed_total", reason="queue_timeout") == 1


async def test_high_priority_tenant_jumps_queued_low_priority_ones(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 1, "queue_timeout_seconds": 10})
    slow = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=10,words=5"), headers=auth())
    await slow.content.readany()
    order: list[str] = []

    async def run(name: str, key: str) -> None:
        response = await stream(gateway, key=key)
        assert response.status == 200
        order.append(name)

    low = [asyncio.ensure_future(run(f"low{i}", CLIENT_KEY)) for i in range(2)]
    await eventually(lambda: gauge_is(gateway, "gateway_queue_depth", 2), what="two low-priority requests queued")
    high = asyncio.ensure_future(run("high", CLIENT_KEY_B))  # tenant-b: priority 10
    await eventually(lambda: gauge_is(gateway, "gateway_queue_depth", 3), what="the high-priority request queued")
    await slow.read()
    await asyncio.wait_for(asyncio.gather(*low, high), 15)
    assert order == ["high", "low0", "low1"]


async def test_client_leaving_the_queue_takes_no_slot(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 1, "queue_timeout_seconds": 10})
    slow = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=10,words=5"), headers=auth())
    await slow.content.readany()
    queued = asyncio.ensure_future(gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers=auth()))
    await eventually(lambda: gauge_is(gateway, "gateway_queue_depth", 1), what="one request queued")
    queued.cancel()  # the client goes away while queued
    await eventually(lambda: gauge_is(gateway, "gateway_queue_depth", 0), what="the queue emptied")
    assert await gateway.metric("gateway_active_streams") == 1
    await slow.read()
    assert (await stream(gateway)).status == 200


async def test_slots_always_come_back(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 3, "queue_timeout_seconds": 10})

    async def one(i: int) -> None:
        kind = i % 4
        if kind == 0:  # success
            await stream(gateway, "mock-1+words=3")
        elif kind == 1:  # upstream failure after the first byte
            await stream(gateway, "mock-1+drop=1")
        elif kind == 2:  # upstream error before the first byte
            await stream(gateway, "mock-1+status=400")
        else:  # client cancels mid-stream
            response = await gateway.client.post(
                "/v1/chat/completions", json=chat_body("mock-1+tps=50,words=50"), headers=auth())
            await response.content.readany()
            response.close()

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 60)
    await eventually(lambda: gauge_is(gateway, "gateway_active_streams", 0), what="every slot back")
    assert await gateway.metric("gateway_queue_depth") == 0


@pytest.mark.redis
async def test_two_gateway_processes_share_one_redis_limit(
    mock: Mock, spawned: Spawn, redis_url: str
) -> None:
    replicas = [
        spawned(mock.url, name=name, ratelimit={"backend": "redis", "redis_url": redis_url},
                tenants=tenants(requests_per_minute=7))
        for name in ("a", "b")
    ]
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> int:
            url = replicas[i % 2].url + "/v1/chat/completions"
            async with session.post(url, json=chat_body(stream=False), headers=auth()) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(20)))
    assert statuses.count(200) == 7 and statuses.count(429) == 13


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
async def test_redis_down_follows_fail_open(start_gateway: GatewayFactory, fail_open: bool, expected: int) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    gateway = await start_gateway(ratelimit={"backend": "redis", "redis_url": dead, "fail_open": fail_open})
    response = await stream(gateway)
    assert response.status == expected
    assert await gateway.metric("gateway_ratelimit_backend_errors_total") > 0
    if not fail_open:
        assert await gateway.metric("gateway_shed_total", reason="limiter_unavailable") == 1
    assert any(line["event"] == "ratelimit_backend_error" for line in gateway.log_lines())


async def test_a_refused_request_shows_the_buckets_as_they_are_after_its_refund(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(
        prices={"mock-*": {"input": 1.0, "output": 2.0}},
        tenants=tenants(requests_per_minute=5, tokens_per_minute=100_000, budget_usd=0.01))
    ok = await stream(gateway, stream=False, max_tokens=10)
    refused = await stream(gateway, stream=False, max_tokens=50_000)  # worst case $0.1 > $0.01
    again = await stream(gateway, stream=False, max_tokens=10)
    assert (ok.status, refused.status, again.status) == (200, 429, 200)
    # The refusal took one request and 50,000 tokens and gave them back: it says so.
    assert ok.headers["x-ratelimit-remaining-requests"] == "4"
    assert refused.headers["x-ratelimit-remaining-requests"] == "4"
    assert again.headers["x-ratelimit-remaining-requests"] == "3"
    assert int(refused.headers["x-ratelimit-remaining-tokens"]) >= int(
        ok.headers["x-ratelimit-remaining-tokens"])
    assert int(refused.headers["x-ratelimit-remaining-tokens"]) > 90_000
