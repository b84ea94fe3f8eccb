"""The mock's other endpoints through the SDKs: Responses API, embeddings, legacy completions, count_tokens."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from tests._mock import COMPLETIONS, EMBEDDINGS, HELLO, RESPONSES, Mock, chat, running_mock

RESPONSE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 5,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    async with running_mock(words=5) as m:
        yield m


def sdk(mock: Mock, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k", **options)


# --- /v1/responses -----------------------------------------------------------------------


async def test_responses_stream_parses_with_the_sdk_in_the_real_event_order(mock: Mock) -> None:
    async with sdk(mock) as client:
        reply = await client.responses.create(model="mock-1", input="hello there mock")
        stream = await client.responses.create(model="mock-1", input="hello there mock", stream=True)
        events = [event async for event in stream]
        chat_reply = await client.chat.completions.create(model="mock-1", messages=HELLO)
    assert [e.type for e in events] == RESPONSE_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == reply.output_text == chat_reply.choices[0].message.content
    assert len(reply.output_text.split()) == 5
    done = events[-1]
    assert done.type == "response.completed" and done.response.status == "completed"
    assert done.response.output_text == reply.output_text
    assert done.response.usage is not None and reply.usage is not None
    assert (done.response.usage.input_tokens, done.response.usage.output_tokens, done.response.usage.total_tokens) == (3, 5, 8)
    assert reply.usage.model_dump() == done.response.usage.model_dump()
    assert reply.output[0].type == "message" and reply.output[0].content[0].type == "output_text"  # type: ignore[union-attr]
    first = events[0]
    assert first.type == "response.created" and first.response.status == "in_progress" and first.response.output == []


async def test_responses_stream_helper_and_message_items(mock: Mock) -> None:
    items: Any = [
        {"role": "system", "content": "be brief"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there mock"}]},
    ]
    async with sdk(mock) as client:
        async with client.responses.stream(model="mock-1", input=items) as stream:
            final = await stream.get_final_response()
        plain = await client.responses.create(model="mock-1", input="hello there mock")
    assert final.output_text == plain.output_text  # same last user message, same answer
    assert final.usage is not None and final.usage.input_tokens == 5  # "be brief" counts


async def test_responses_max_output_tokens_ends_incomplete(mock: Mock) -> None:
    payloads = await mock.payloads(RESPONSES, {"model": "m", "input": "hi", "stream": True, "max_output_tokens": 2})
    assert payloads[-1]["type"] == "response.incomplete"
    assert payloads[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payloads[-1]["response"]["usage"]["output_tokens"] == 2
    async with mock.post(RESPONSES, {"model": "m", "input": "hi", "max_output_tokens": 2}) as resp:
        body = await resp.json()
    assert body["object"] == "response" and body["status"] == "incomplete"


async def test_responses_faults_apply(mock: Mock) -> None:
    async with sdk(mock, max_retries=0) as client:
        with pytest.raises(openai.RateLimitError):
            await client.responses.create(model="mock-1+status=429", input="hi")
    async with sdk(mock, max_retries=1) as client:
        reply = await client.responses.create(model="mock-1+fail=1", input="hi")
    assert reply.output_text
    payloads = await mock.payloads(RESPONSES, {"model": "m+noend", "input": "hi", "stream": True})
    assert payloads[-1]["type"] == "response.output_item.done"
    async with mock.post(RESPONSES, {"model": "m", "stream": True}) as resp:
        assert resp.status == 400
        assert "input" in (await resp.json())["error"]["message"]


# --- /v1/embeddings ----------------------------------------------------------------------


async def test_embeddings_with_the_sdk(mock: Mock) -> None:
    async with sdk(mock) as client:
        one = await client.embeddings.create(model="mock-embed", input="hello there")
        many = await client.embeddings.create(model="mock-embed", input=["hello there", "other text here"])
        sized = await client.embeddings.create(model="mock-embed", input="hello there", dimensions=5)
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == one.data[0].embedding != many.data[1].embedding
    assert len(one.data[0].embedding) == 16 and len(sized.data[0].embedding) == 5
    assert math.isclose(sum(x * x for x in one.data[0].embedding), 1.0, rel_tol=1e-5)
    assert (one.usage.prompt_tokens, one.usage.total_tokens) == (2, 2)
    assert (many.usage.prompt_tokens, many.usage.total_tokens) == (5, 5)

    async with mock.post(EMBEDDINGS, {"model": "e", "input": "hello there"}) as resp:
        body = await resp.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    assert body["data"][0]["embedding"] == pytest.approx(one.data[0].embedding, rel=1e-6)  # float32 via base64
    for bad in ({"model": "e"}, {"model": "e", "input": []}, {"model": "e", "input": [""]}, {"model": "e", "input": "x", "dimensions": 0}):
        async with mock.post(EMBEDDINGS, bad) as resp:
            assert resp.status == 400


# --- /v1/completions ---------------------------------------------------------------------


async def test_legacy_completions_with_the_sdk(mock: Mock) -> None:
    async with sdk(mock) as client:
        full = await client.completions.create(model="mock-1", prompt="hello there mock")
        stream = await client.completions.create(
            model="mock-1", prompt="hello there mock", stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        chat_reply = await client.chat.completions.create(model="mock-1", messages=HELLO)
    assert full.object == "text_completion" and full.choices[0].finish_reason == "stop"
    assert full.choices[0].text == chat_reply.choices[0].message.content
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert full.usage is not None and chunks[-1].usage.model_dump() == full.usage.model_dump()
    assert (full.usage.prompt_tokens, full.usage.completion_tokens) == (3, 5)


async def test_legacy_completions_stream_ends_with_done_and_honours_max_tokens(mock: Mock) -> None:
    events = await mock.events(COMPLETIONS, {"model": "m", "prompt": ["hi"], "stream": True, "max_tokens": 2})
    assert events[-1] == (None, "[DONE]") and len(events) == 4
    payloads = await mock.payloads(COMPLETIONS, {"model": "m", "prompt": "hi", "stream": True, "max_tokens": 2})
    assert payloads[-2]["choices"] == [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}]
    async with mock.post(COMPLETIONS, chat()) as resp:  # no `prompt`
        assert resp.status == 400


# --- /v1/messages/count_tokens -----------------------------------------------------------


async def test_count_tokens_matches_the_messages_usage(mock: Mock) -> None:
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="k") as client:
        counted = await client.messages.count_tokens(model="mock-1", messages=HELLO, system="be brief")
        reply = await client.messages.create(model="mock-1", max_tokens=10, messages=HELLO, system="be brief")
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.count_tokens(model="mock-1", messages=[])
    assert counted.input_tokens == reply.usage.input_tokens == 5
