"""The rest of the HTTP surface through the official SDKs: `/v1/responses`, `/v1/embeddings`,
`/v1/completions`, `/v1/messages/count_tokens`, and `/v1/models` in Anthropic's shape."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest

from gateway.auth import hash_key
from tests.conftest import (
    ANTHROPIC_UPSTREAM_KEY,
    CLIENT_KEY,
    UPSTREAM_KEY,
    Gateway,
    GatewayFactory,
    Mock,
    auth,
)

ASK: Any = [{"role": "user", "content": "tell me"}]


def openai_client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY, max_retries=0)


def anthropic_client(gateway: Gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url(""), api_key=CLIENT_KEY, max_retries=0)


def log_of(gateway: Gateway, route: str) -> list[dict[str, Any]]:
    return [line for line in gateway.request_logs() if line["route"] == route]


async def test_responses_stream_with_the_openai_sdk(gateway: Gateway, mock: Mock) -> None:
    async with openai_client(gateway) as client:
        stream = await client.responses.create(model="mock-1", input="tell me", stream=True)
        events = [event async for event in stream]
        whole = await client.responses.create(model="mock-1", input="tell me")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and text == whole.output_text
    assert events[-1].type == "response.completed"
    assert whole.usage is not None and whole.usage.output_tokens == 12
    assert [r.path for r in mock.state.requests] == ["/v1/responses", "/v1/responses"]
    assert mock.state.requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    streamed, answered = log_of(gateway, "responses")
    assert streamed["stream"] is True and streamed["outcome"] == "ok"
    assert streamed["completion_tokens"] == 12 and streamed["usage_reported"] is True
    assert answered["completion_tokens"] == 12 and answered["usage_reported"] is True


async def test_responses_truncated_stream_ends_with_an_error_event(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/responses", json={"model": "mock-1+noend", "input": "hi", "stream": True}, headers=auth())
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    name, data = events[-1].split(b"\n")  # the Responses API's own error event
    assert name == b"event: error"
    error = orjson.loads(data.removeprefix(b"data: "))
    assert error["type"] == "error" and error["code"] == "upstream_error" and error["message"]
    (log,) = log_of(gateway, "responses")
    assert log["outcome"] == "upstream_error"


@pytest.mark.parametrize(("body", "field"), [
    ({"input": "hi"}, "model"), ({"model": "mock-1"}, "input")])
async def test_responses_body_check(gateway: Gateway, body: dict[str, Any], field: str) -> None:
    response = await gateway.client.post("/v1/responses", json=body, headers=auth())
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error" and f"`{field}`" in error["message"]


async def test_responses_reach_anthropic_dialect_upstreams_too(gateway: Gateway) -> None:
    # issue 21: translated both ways (test_responses_claude.py has the SDK's view)
    response = await gateway.client.post(
        "/v1/responses", json={"model": "claude-3-haiku", "input": "hi"}, headers=auth())
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "response" and body["status"] == "completed" and body["output"]


async def test_embeddings_with_the_openai_sdk(gateway: Gateway, mock: Mock) -> None:
    async with openai_client(gateway) as client:
        reply = await client.embeddings.create(model="mock-embed", input=["one two", "three"])
    assert len(reply.data) == 2 and all(item.embedding for item in reply.data)
    assert mock.state.requests[0].path == "/v1/embeddings"
    (log,) = log_of(gateway, "embeddings")
    assert log["usage_reported"] is True and log["prompt_tokens"] == reply.usage.prompt_tokens
    assert log["completion_tokens"] == 0


async def test_completions_with_the_openai_sdk(gateway: Gateway, mock: Mock) -> None:
    async with openai_client(gateway) as client:
        whole = await client.completions.create(model="mock-1", prompt="once upon")
        stream = await client.completions.create(model="mock-1", prompt="once upon", stream=True)
        text = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
    assert text and text == whole.choices[0].text
    assert whole.usage is not None and whole.usage.completion_tokens == 12
    assert [r.path for r in mock.state.requests] == ["/v1/completions"] * 2
    answered, streamed = log_of(gateway, "completions")
    assert answered["completion_tokens"] == 12 and answered["usage_reported"] is True
    assert streamed["stream"] is True and streamed["outcome"] == "ok"


async def test_count_tokens_with_the_anthropic_sdk(gateway: Gateway, mock: Mock) -> None:
    async with anthropic_client(gateway) as client:
        counted = await client.messages.count_tokens(model="claude-3-haiku", messages=ASK)
    assert counted.input_tokens > 0
    seen = mock.state.requests[0]
    assert seen.path == "/v1/messages/count_tokens" and seen.headers["x-api-key"] == ANTHROPIC_UPSTREAM_KEY
    (log,) = log_of(gateway, "count_tokens")
    assert log["outcome"] == "ok" and log["prompt_tokens"] == 0 and log["completion_tokens"] == 0


async def test_count_tokens_is_admitted_by_request_count_only(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=[{
        "name": "tiny", "key_sha256": hash_key(CLIENT_KEY), "tokens_per_minute": 1000,
        "requests_per_minute": 100}])
    body = {"model": "claude-3-haiku", "messages": ASK}
    remaining = []
    for _ in range(2):
        response = await gateway.client.post("/v1/messages/count_tokens", json=body, headers=auth())
        assert response.status == 200 and (await response.json())["input_tokens"] > 0
        remaining.append(response.headers["x-ratelimit-remaining-tokens"])
    assert remaining == ["1000", "1000"]  # nothing reserved, nothing charged
    chat = await gateway.client.post("/v1/messages", json={**body, "max_tokens": 10}, headers=auth())
    assert chat.status == 200 and int(chat.headers["x-ratelimit-remaining-tokens"]) < 1000


async def test_models_in_anthropic_shape_for_the_anthropic_sdk(gateway: Gateway) -> None:
    async with anthropic_client(gateway) as client:
        page = await client.models.list()
    ids = [model.id for model in page.data]
    assert "claude-3-haiku" in ids and "mock-1" in ids
    assert all(model.type == "model" and model.display_name == model.id for model in page.data)
    response = await gateway.client.get("/v1/models", headers={**auth(), "anthropic-version": "2023-06-01"})
    body = await response.json()
    assert body["has_more"] is False and body["first_id"] == ids[0] and body["last_id"] == ids[-1]
    plain = await (await gateway.client.get("/v1/models", headers=auth())).json()
    assert plain["object"] == "list" and [m["id"] for m in plain["data"]] == ids
