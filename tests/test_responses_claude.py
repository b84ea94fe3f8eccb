"""`/v1/responses` to an Anthropic-served model, through HTTP: the official openai SDK's
`responses.create` and `responses.stream()` against a `claude-*` model on the mock Anthropic
upstream, with tools, usage, errors and the fields that cannot be carried."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.conftest import CLIENT_KEY, Gateway, Mock, auth

TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather now",
                     "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                                    "required": ["location"]}}]


def sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY, max_retries=0)


async def claude_text(gateway: Gateway, content: str, **system: str) -> str:
    """What the same model says to the same question asked in its own dialect."""
    async with anthropic.AsyncAnthropic(base_url=gateway.url(""), api_key=CLIENT_KEY, max_retries=0) as client:
        reply = await client.messages.create(model="claude-3-haiku", max_tokens=200,
                                             messages=[{"role": "user", "content": content}], **system)
    return "".join(block.text for block in reply.content if block.type == "text")


async def test_responses_create_reaches_a_claude_model(gateway: Gateway, mock: Mock) -> None:
    async with sdk(gateway) as client:
        response = await client.responses.create(
            model="claude-3-haiku", input="What is a gateway?", instructions="Be brief.",
            max_output_tokens=200, temperature=0.5, metadata={"app": "test"})
    sent = mock.state.requests[-1]
    assert sent.path == "/v1/messages" and sent.body is not None
    assert sent.body["system"] == "Be brief." and sent.body["max_tokens"] == 200
    assert sent.body["messages"] == [{"role": "user", "content": "What is a gateway?"}]
    assert response.status == "completed" and response.model == "claude-3-haiku"
    assert response.output_text == await claude_text(gateway, "What is a gateway?", system="Be brief.")
    assert response.instructions == "Be brief." and response.metadata == {"app": "test"}
    line = gateway.request_logs()[0]
    assert line["route"] == "responses" and line["translated"] is True and line["usage_reported"] is True
    assert response.usage is not None
    assert (line["prompt_tokens"], line["completion_tokens"]) == (
        response.usage.input_tokens, response.usage.output_tokens)


async def test_responses_stream_from_a_claude_model(gateway: Gateway, mock: Mock) -> None:
    async with sdk(gateway) as client:
        async with client.responses.stream(model="claude-3-haiku", input=[
                {"role": "user", "content": [{"type": "input_text", "text": "Stream please."}]}]) as stream:
            types, deltas = [], []
            async for event in stream:
                types.append(event.type)
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = await stream.get_final_response()
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert len(deltas) > 1 and final.output_text == "".join(deltas)
    assert final.output_text == await claude_text(gateway, "Stream please.")
    assert final.usage is not None and final.usage.output_tokens > 0
    line = gateway.request_logs()[0]
    assert line["stream"] is True and line["outcome"] == "ok" and line["translated"] is True
    assert (line["usage_reported"], line["completion_tokens"]) == (True, final.usage.output_tokens)


async def test_function_tools_calls_and_outputs_both_ways(gateway: Gateway, mock: Mock) -> None:
    async with sdk(gateway) as client:
        first = await client.responses.create(model="claude-3-haiku+tool", input="Weather in Paris?",
                                              tools=TOOLS)
        [call] = [item for item in first.output if item.type == "function_call"]
        assert call.name == "get_weather" and isinstance(orjson.loads(call.arguments), dict)
        async with client.responses.stream(model="claude-3-haiku+tool", input="Weather in Paris?",
                                           tools=TOOLS) as stream:
            argument_deltas = [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
            streamed = await stream.get_final_response()
        [streamed_call] = [item for item in streamed.output if item.type == "function_call"]
        assert "".join(argument_deltas) == streamed_call.arguments and argument_deltas
        # the call and its output go back as items: Claude gets tool_use and tool_result
        await client.responses.create(model="claude-3-haiku", tools=TOOLS, input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}])
    sent = mock.state.requests[-1].body
    assert sent is not None
    assert sent["tools"][0]["name"] == "get_weather" and "input_schema" in sent["tools"][0]
    assert sent["messages"][1]["content"][0] == {
        "type": "tool_use", "id": call.call_id, "name": "get_weather", "input": orjson.loads(call.arguments)}
    assert sent["messages"][2]["content"][0] == {
        "type": "tool_result", "tool_use_id": call.call_id, "content": "18C and sunny"}


@pytest.mark.parametrize(("extra", "field"), [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type 'web_search'"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type 'file_search'"),
    ({"background": True}, "background"),
])
async def test_a_field_that_cannot_be_carried_is_a_400_naming_it(
    gateway: Gateway, mock: Mock, extra: dict[str, Any], field: str,
) -> None:
    async with sdk(gateway) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(model="claude-3-haiku", input="hi", **extra)
    assert info.value.status_code == 400 and field in info.value.message
    assert not mock.state.requests  # refused before admission and before any upstream call


async def test_an_upstream_4xx_comes_back_in_openai_shape(gateway: Gateway) -> None:
    response = await gateway.client.post("/v1/responses", headers=auth(), json={
        "model": "claude-3-haiku+context_overflow", "input": "hi"})
    body = await response.json()
    assert response.status == 400
    assert set(body) == {"error"} and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]


async def test_an_openai_served_model_still_passes_through(gateway: Gateway, mock: Mock) -> None:
    async with sdk(gateway) as client:
        response = await client.responses.create(model="mock-1", input="hi", store=True)
    assert mock.state.requests[-1].path == "/v1/responses"
    assert response.output_text and response.id.startswith("resp_mock")
    assert "translated" not in gateway.request_logs()[0]


async def test_a_stream_cut_mid_answer_ends_with_the_responses_error_event(gateway: Gateway) -> None:
    response = await gateway.client.post("/v1/responses", headers=auth(), json={
        "model": "claude-3-haiku+drop=2", "input": "hi", "stream": True})
    raw = await response.read()
    events = [line for line in raw.split(b"\n\n") if line]
    last = events[-1]
    assert last.startswith(b"event: error\ndata: ")
    data = orjson.loads(last.split(b"data: ", 1)[1])
    numbers = [orjson.loads(e.split(b"data: ", 1)[1])["sequence_number"] for e in events[:-1]]
    assert data["sequence_number"] == numbers[-1] + 1 == len(numbers)
    assert data["error"]["message"] and gateway.request_logs()[0]["outcome"] == "upstream_error"
