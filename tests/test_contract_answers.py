"""Edges of the contract an outside review found: each through HTTP."""

from __future__ import annotations

import asyncio
import time

import anthropic
import openai

from gateway.auth import hash_key
from gateway.state import QUEUE
from tests._proc import eventually
from tests.conftest import CLIENT_KEY, Gateway, GatewayFactory, Mock, auth, chat_body


async def test_a_silent_upstream_is_a_504_for_a_non_stream_request_too(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway(upstreams=[{
        "name": "mock", "dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY",
        "models": ["mock-*"], "first_byte_timeout_seconds": 0.5, "max_retries": 0}])
    started = time.perf_counter()
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+hang", stream=False), headers=auth())
    assert response.status == 504
    assert time.perf_counter() - started < 5
    assert (await response.json())["error"]["code"] == "upstream_timeout"


async def test_an_upstream_4xx_on_the_simple_route_is_a_simple_error_event(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/api/chat/stream", json=chat_body("mock-1+status=400"), headers=auth())
    assert response.status == 400
    assert response.headers["Content-Type"].startswith("text/event-stream")
    body = await response.read()
    assert body.startswith(b"event: error\ndata: {") and b'"code":400' in body


async def test_refusals_after_admission_carry_the_rate_limit_headers(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway(
        limits={"max_concurrent_streams": 1, "max_queue": 0},
        prices={"mock-*": {"input": 1000.0, "output": 1000.0}},
        tenants=[{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 0.000001,
                  "budget_period": "day"}])
    over = await gateway.client.post("/v1/messages", json=chat_body("mock-1"), headers=auth())
    assert over.status == 429 and over.headers["x-ratelimit-limit-requests"]
    assert "anthropic-ratelimit-requests-remaining" in over.headers


async def test_a_shed_request_carries_the_rate_limit_headers(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(limits={"max_concurrent_streams": 1, "max_queue": 0})
    first = asyncio.create_task(gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+delay=1"), headers=auth()))
    queue = gateway.client.app[QUEUE]
    await eventually(lambda: queue.active == 1, timeout=5, what="the first request holding the slot")
    shed = await gateway.client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    assert shed.status == 503 and "Retry-After" in shed.headers
    assert shed.headers["x-ratelimit-remaining-requests"]
    await (await first).read()


async def test_not_quite_json_is_refused_before_admission(gateway: Gateway, mock: Mock) -> None:
    plain = b'{"model":"mock-1","messages":[{"role":"user","content":"hi"}]}'
    for body, words in ((b"\xef\xbb\xbf" + plain, "byte order mark"),
                        (plain.decode().encode("utf-16"), "UTF-8"),
                        (plain[:-1] + b',"temperature":NaN}', "NaN")):
        response = await gateway.client.post(
            "/v1/chat/completions", data=body, headers={**auth(), "Content-Type": "application/json"})
        assert response.status == 400, body
        assert words in (await response.json())["error"]["message"]
        assert "x-ratelimit-remaining-requests" not in response.headers
    assert not mock.state.requests


async def test_an_unknown_content_encoding_is_refused(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", data=b'{"model":"mock-1","messages":[{"role":"user","content":"hi"}]}',
        headers={**auth(), "Content-Type": "application/json", "Content-Encoding": "foo"})
    assert response.status == 400
    assert "Content-Encoding" in (await response.json())["error"]["message"]


async def test_a_declared_length_over_the_limit_is_a_413_before_the_body(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection(gateway.client.host, gateway.client.port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                     + CLIENT_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 99999999\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # no body was sent
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413")


async def test_models_answer_errors_and_retrieve_in_the_callers_shape(gateway: Gateway) -> None:
    bad = await gateway.client.get("/v1/models", headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"})
    assert bad.status == 401 and (await bad.json())["type"] == "error"
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY) as client:
        assert (await client.models.retrieve("mock-1")).id == "mock-1"
        try:
            await client.models.retrieve("no-such-model")
            raise AssertionError("expected a 404")
        except openai.NotFoundError:
            pass
    async with anthropic.AsyncAnthropic(base_url=gateway.url(), api_key=CLIENT_KEY) as claude:
        assert (await claude.models.retrieve("claude-3-haiku")).id == "claude-3-haiku"


async def test_a_stream_that_fails_after_its_first_byte_still_has_its_ttfb(gateway: Gateway) -> None:
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("mock-1+drop=3"),
                                         headers=auth())
    await response.read()
    (log,) = gateway.request_logs()
    assert log["outcome"] == "upstream_error"
    assert log["ttfb_ms"] is not None and log["ttfb_ms"] > 0


def test_a_route_can_be_overridden_from_the_env_by_its_model_name(mock: Mock) -> None:
    from gateway.config import config_from_dict
    from tests.conftest import UPSTREAM_ENV, raw_config

    raw = raw_config(mock.url, routes=[{"model": "chat-default", "targets": ["mock:gpt-4o"]}])
    config = config_from_dict(raw, {**UPSTREAM_ENV, "GATEWAY_ROUTES_CHAT_DEFAULT_STRATEGY": "balance"},
                              source="<t>")
    assert config.routes[0].strategy == "balance"
