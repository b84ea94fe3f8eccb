"""Any client reaches any provider: the OpenAI SDK on an Anthropic-dialect upstream and the
Anthropic SDK on an OpenAI-dialect upstream, through HTTP, stream and not, tools included."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from gateway.sse import EventParser
from tests.conftest import ANTHROPIC_UPSTREAM_KEY, CLIENT_KEY, UPSTREAM_KEY, Gateway, Mock, auth, chat_body

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "description": "weather", "input_schema": WEATHER}]
ASK: Any = [{"role": "user", "content": "tell me about the weather"}]


def openai_client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY, max_retries=0)


def anthropic_client(gateway: Gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url(""), api_key=CLIENT_KEY, max_retries=0)


async def anthropic_text_direct(mock: Mock, model: str) -> str:
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key=ANTHROPIC_UPSTREAM_KEY,
                                        max_retries=0) as client:
        reply = await client.messages.create(model=model, max_tokens=100, messages=ASK)
    return "".join(block.text for block in reply.content if block.type == "text")


async def openai_text_direct(mock: Mock, model: str) -> str:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key=UPSTREAM_KEY, max_retries=0) as client:
        reply = await client.chat.completions.create(model=model, messages=ASK)
    return reply.choices[0].message.content or ""


async def test_openai_sdk_streams_a_claude_model(gateway: Gateway, mock: Mock) -> None:
    async with openai_client(gateway) as client:
        stream = await client.chat.completions.create(
            model="claude-3-haiku", messages=ASK, stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == await anthropic_text_direct(mock, "claude-3-haiku")
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    seen = [r for r in mock.state.requests if r.path == "/v1/messages"][0]
    assert seen.headers["x-api-key"] == ANTHROPIC_UPSTREAM_KEY
    sent = seen.body or {}
    assert sent["model"] == "claude-3-haiku" and sent["max_tokens"] == gateway.config.server.default_max_tokens
    assert sent["messages"] == ASK and sent["stream"] is True
    (log,) = [line for line in gateway.request_logs() if line["route"] == "chat_completions"]
    assert log["translated"] is True and log["outcome"] == "ok" and log["upstream"] == "mock-anthropic"
    assert log["completion_tokens"] == 12 and log["usage_reported"] is True


async def test_openai_sdk_non_stream_on_a_claude_model(gateway: Gateway, mock: Mock) -> None:
    async with openai_client(gateway) as client:
        reply = await client.chat.completions.create(model="claude-3-haiku", messages=ASK, max_tokens=100)
    assert reply.object == "chat.completion" and reply.model == "claude-3-haiku"
    assert reply.choices[0].message.content == await anthropic_text_direct(mock, "claude-3-haiku")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 12
    assert (mock.state.requests[0].body or {})["max_tokens"] == 100
    (log,) = gateway.request_logs()
    assert log["translated"] is True and log["completion_tokens"] == 12


async def test_openai_sdk_tool_call_from_claude_in_many_fragments(gateway: Gateway, mock: Mock) -> None:
    async with openai_client(gateway) as client:
        stream = await client.chat.completions.create(
            model="claude-3-haiku+tool", messages=ASK, tools=OPENAI_TOOLS, stream=True)
        chunks = [chunk async for chunk in stream]
        whole = await client.chat.completions.create(
            model="claude-3-haiku+tool", messages=ASK, tools=OPENAI_TOOLS)
    fragments = [call.function.arguments for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []
                 if call.function and call.function.arguments]
    assert len(fragments) >= 3
    [first] = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or [] if call.id]
    assert first.function is not None and first.function.name == "get_weather" and first.index == 0
    [call] = whole.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and call.id == first.id
    assert orjson.loads("".join(fragments)) == orjson.loads(call.function.arguments)
    assert "query" in orjson.loads(call.function.arguments)
    assert whole.choices[0].finish_reason == "tool_calls"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"]
    sent = mock.state.requests[0].body or {}
    assert sent["tools"] == [{"name": "get_weather", "input_schema": WEATHER}]


async def test_anthropic_sdk_streams_an_openai_model(gateway: Gateway, mock: Mock) -> None:
    async with anthropic_client(gateway) as client:
        async with client.messages.stream(model="mock-1", max_tokens=100, messages=ASK,
                                          system="be brief") as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        whole = await client.messages.create(model="mock-1", max_tokens=100, messages=ASK)
    assert text == await openai_text_direct(mock, "mock-1")
    assert whole.content[0].type == "text" and whole.content[0].text == text
    assert final.stop_reason == "end_turn" and whole.stop_reason == "end_turn"
    assert final.usage.output_tokens == 12 and whole.usage.output_tokens == 12
    seen = mock.state.requests[0]
    assert seen.path == "/v1/chat/completions" and seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    sent = seen.body or {}
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["max_tokens"] == 100 and sent["stream_options"] == {"include_usage": True}
    logs = gateway.request_logs()
    assert [(line["translated"], line["completion_tokens"]) for line in logs] == [(True, 12), (True, 12)]


async def test_anthropic_sdk_tool_use_from_an_openai_model(gateway: Gateway, mock: Mock) -> None:
    async with anthropic_client(gateway) as client:
        async with client.messages.stream(model="mock-1+tool", max_tokens=100, messages=ASK,
                                          tools=ANTHROPIC_TOOLS) as stream:
            deltas = [event.partial_json async for event in stream if event.type == "input_json"]
            final = await stream.get_final_message()
        whole = await client.messages.create(model="mock-1+tool", max_tokens=100, messages=ASK,
                                             tools=ANTHROPIC_TOOLS)
    assert len([d for d in deltas if d]) >= 3
    [streamed] = [block for block in final.content if block.type == "tool_use"]
    [answered] = [block for block in whole.content if block.type == "tool_use"]
    assert streamed.name == answered.name == "get_weather"
    assert streamed.input == answered.input and "query" in streamed.input  # type: ignore[operator]
    assert final.stop_reason == whole.stop_reason == "tool_use"
    sent = mock.state.requests[0].body or {}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_each_translated_delta_reaches_the_client_before_the_next_is_sent(
    gateway: Gateway, mock: Mock,
) -> None:
    arrived: list[float] = []
    async with openai_client(gateway) as client:
        stream = await client.chat.completions.create(
            model="claude-3-haiku+tps=20,words=6", messages=ASK, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrived.append(time.monotonic())
    # The upstream's own events, in order (the same answer asked directly): which carry text.
    async with aiohttp.ClientSession() as session:
        direct = await session.post(mock.url + "/v1/messages", json={
            "model": "claude-3-haiku+words=6", "max_tokens": 100, "stream": True, "messages": ASK})
        kinds = [event.event for event in EventParser().feed(await direct.read())]
    record = mock.state.streams[0]
    assert len(arrived) == 6
    delta_at = [i for i, kind in enumerate(kinds) if kind == "content_block_delta"]
    assert len(delta_at) == 6 and len(record.sent_at) >= delta_at[-1] + 1
    for k in range(5):
        assert arrived[k] < record.sent_at[delta_at[k + 1]], f"delta {k} waited for delta {k + 1}"


async def test_upstream_4xx_is_translated_into_the_route_error_shape(gateway: Gateway) -> None:
    async with openai_client(gateway) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(model="claude-3-haiku+context_overflow", messages=ASK)
    body = raised.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    assert isinstance(body["message"], str) and body["message"]
    async with anthropic_client(gateway) as aclient:
        with pytest.raises(anthropic.BadRequestError) as araised:
            await aclient.messages.create(model="mock-1+context_overflow", max_tokens=10, messages=ASK)
    abody = araised.value.body
    assert isinstance(abody, dict) and abody["type"] == "error"
    assert abody["error"]["type"] == "invalid_request_error"
    assert [line["translated"] for line in gateway.request_logs()] == [True, True]


async def test_truncated_translated_stream_ends_with_one_error_in_the_client_dialect(
    gateway: Gateway,
) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("claude-3-haiku+drop=3"), headers=auth())
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    assert b"[DONE]" not in events[-1]
    error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["type"] == "server_error" and error["message"]
    assert sum(1 for e in events if b'"error"' in e) == 1
    response = await gateway.client.post(
        "/v1/messages", json=chat_body("mock-1+drop=3", max_tokens=50), headers=auth())
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    name, data = events[-1].split(b"\n")
    assert name == b"event: error" and orjson.loads(data.removeprefix(b"data: "))["type"] == "error"
    assert not any(b"message_stop" in e for e in events)
    logs = gateway.request_logs()
    assert [(line["outcome"], line["translated"]) for line in logs] == [("upstream_error", True)] * 2


async def test_same_dialect_stays_untranslated(gateway: Gateway) -> None:
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("mock-1"), headers=auth())
    assert response.status == 200 and (await response.read()).endswith(b"data: [DONE]\n\n")
    (log,) = gateway.request_logs()
    assert "translated" not in log and log["outcome"] == "ok"
