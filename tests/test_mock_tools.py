"""The mock's tool calls (`tool`, `tools=2`, `text_then_tool`), in each API's exact wire shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests._mock import CHAT, HELLO, MESSAGES, RESPONSES, Mock, chat, running_mock

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": WEATHER}},
]
ANTHROPIC_TOOLS: Any = [
    {"name": "get_weather", "description": "weather", "input_schema": WEATHER},
    {"name": "get_time", "description": "time", "input_schema": WEATHER},
]


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    async with running_mock(words=6) as m:
        yield m


async def test_openai_non_stream_tool_call(mock: Mock) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k") as client:
        reply = await client.chat.completions.create(model="mock-1+tool", messages=HELLO, tools=OPENAI_TOOLS)
        again = await client.chat.completions.create(model="mock-1+tool", messages=HELLO, tools=OPENAI_TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.id.startswith("call_")
    arguments = orjson.loads(call.function.arguments)
    assert sorted(arguments) == ["limit", "query"] and len(arguments["query"].split()) == 4
    assert again.choices[0].message.tool_calls == choice.message.tool_calls  # deterministic


async def test_openai_stream_sends_arguments_in_many_fragments(mock: Mock) -> None:
    full = await mock.post(CHAT, chat(stream=False, model="mock-1+tool", tools=OPENAI_TOOLS))
    expected = (await full.json())["choices"][0]["message"]["tool_calls"][0]
    usage = {"include_usage": True}
    chunks = await mock.payloads(CHAT, chat(model="mock-1+tool", tools=OPENAI_TOOLS, stream_options=usage))
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"] == (await full.json())["usage"]
    chunks = chunks[:-2] + ["[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": expected["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
    }
    fragments = deltas[1:-1]
    assert len(fragments) >= 8
    assert all(d == {"tool_calls": [{"index": 0, "function": {"arguments": d["tool_calls"][0]["function"]["arguments"]}}]} for d in fragments)
    joined = "".join(d["tool_calls"][0]["function"]["arguments"] for d in fragments)
    assert joined == expected["function"]["arguments"]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert (await full.json())["usage"]["completion_tokens"] == len(fragments)  # one per fragment


async def test_openai_sdk_accumulates_two_streamed_tool_calls(mock: Mock) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k") as client:
        async with client.chat.completions.stream(
            model="mock-1+tools=2", messages=HELLO, tools=OPENAI_TOOLS
        ) as stream:
            final = await stream.get_final_completion()
        plain = await client.chat.completions.create(model="mock-1+tools=2", messages=HELLO, tools=OPENAI_TOOLS)
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert [(c.id, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        (c.id, c.function.arguments) for c in plain.choices[0].message.tool_calls or []  # type: ignore[union-attr]
    ]
    assert calls[0].id != calls[1].id and final.choices[0].finish_reason == "tool_calls"


async def test_openai_text_then_tool_streams_text_first(mock: Mock) -> None:
    chunks = await mock.payloads(CHAT, chat(model="mock-1+text_then_tool", tools=OPENAI_TOOLS))
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    text = "".join(d.get("content") or "" for d in deltas)
    assert len(text.split()) == 6 and all("tool_calls" not in d for d in deltas[:7])
    assert deltas[7]["tool_calls"][0]["function"]["name"] == "get_weather"
    reply = await (await mock.post(CHAT, chat(stream=False, model="mock-1+text_then_tool", tools=OPENAI_TOOLS))).json()
    message = reply["choices"][0]["message"]
    assert message["content"] == text and len(message["tool_calls"]) == 1
    assert reply["choices"][0]["finish_reason"] == "tool_calls"


async def test_anthropic_stream_tool_use_event_sequence(mock: Mock) -> None:
    body = chat(model="mock-1+tool", tools=ANTHROPIC_TOOLS, max_tokens=100)
    events = await mock.events(MESSAGES, body)
    names = [name for name, _ in events]
    payloads = [orjson.loads(data) for _, data in events]
    n = len(events) - 7  # the argument fragments
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta"] + [
        "content_block_delta"
    ] * n + ["content_block_stop", "message_delta", "message_stop"]
    assert n >= 8
    full = await (await mock.post(MESSAGES, {**body, "stream": False})).json()
    [tool_use] = full["content"]
    assert payloads[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": tool_use["id"], "name": "get_weather", "input": {}},
    }
    assert payloads[3] == {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}}
    partial = "".join(p["delta"]["partial_json"] for p in payloads[4 : 4 + n])
    assert orjson.loads(partial) == tool_use["input"] and tool_use["id"].startswith("toolu_")
    assert payloads[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert payloads[-2]["usage"] == {"output_tokens": n}
    assert full["stop_reason"] == "tool_use" and full["usage"]["output_tokens"] == n


async def test_anthropic_sdk_text_then_two_tools(mock: Mock) -> None:
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="k") as client:
        async with client.messages.stream(
            model="mock-1+text_then_tool,tools=2", max_tokens=100, messages=HELLO, tools=ANTHROPIC_TOOLS
        ) as stream:
            final = await stream.get_final_message()
        plain = await client.messages.create(
            model="mock-1+text_then_tool,tools=2", max_tokens=100, messages=HELLO, tools=ANTHROPIC_TOOLS
        )
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.model_dump()["content"] == plain.model_dump()["content"]
    assert final.content[0].text and len(final.content[0].text.split()) == 6  # type: ignore[union-attr]
    assert [b.name for b in final.content[1:]] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == plain.usage.output_tokens


async def test_tool_directive_without_tools_in_the_request_answers_text(mock: Mock) -> None:
    reply = await (await mock.post(CHAT, chat(stream=False, model="mock-1+tool"))).json()
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert len(reply["choices"][0]["message"]["content"].split()) == 6
    assert "tool_calls" not in reply["choices"][0]["message"]


async def test_responses_api_function_call(mock: Mock) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k") as client:
        reply = await client.responses.create(model="mock-1+tool", input="weather?", tools=tools)
        stream = await client.responses.create(model="mock-1+tool", input="weather?", tools=tools, stream=True)
        events = [event async for event in stream]
    [call] = reply.output
    assert call.type == "function_call" and call.name == "get_weather"
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) >= 8 and "".join(deltas) == call.arguments
    assert events[-1].type == "response.completed"
    assert events[-1].response.output[0].model_dump() == call.model_dump()  # type: ignore[union-attr]
    raw = await mock.payloads(RESPONSES, {"model": "m+tool", "input": "weather?", "tools": tools, "stream": True})
    assert [p["sequence_number"] for p in raw] == list(range(len(raw)))
    assert raw[2]["item"] == {
        "id": call.id,
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": call.call_id,
        "name": "get_weather",
    }
