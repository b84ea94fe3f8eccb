"""The /v1/responses <-> Anthropic codecs, pure: the request (what is carried, what is a 400
naming the field) and the answer (recorded Anthropic streams in, Responses events out, each
validated and accumulated by the openai SDK's own stream state)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.codecs.anthropic_to_responses import AnthropicToResponses, message_to_response
from gateway.codecs.responses_request import Echo, responses_to_messages
from gateway.errors import BadRequest
from gateway.sse import Event
from tests._codec_streams import (
    ANTHROPIC_ERROR,
    ANTHROPIC_MAX_TOKENS,
    ANTHROPIC_TEXT,
    ANTHROPIC_THINKING,
    ANTHROPIC_TOOL,
    ANTHROPIC_TWO_TOOLS,
    Recorded,
    flat,
    run,
)

EVENT = TypeAdapter(ResponseStreamEvent)
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather now",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]


# ------------------------------------------------------------------------------ the request

def test_input_string_instructions_and_settings_are_carried() -> None:
    body, echo = responses_to_messages({
        "model": "claude-x", "input": "hi", "instructions": "Be brief.", "max_output_tokens": 50,
        "temperature": 0.5, "top_p": 0.9, "stream": True, "metadata": {"k": "v"}, "store": False}, 4096)
    assert body == {"system": "Be brief.", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 50, "temperature": 0.5, "top_p": 0.9, "stream": True}
    assert (echo.instructions, echo.max_output_tokens, echo.metadata) == ("Be brief.", 50, {"k": "v"})


def test_items_tools_calls_and_their_outputs_are_carried() -> None:
    body, echo = responses_to_messages({"input": [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in SF?"},
                                                        {"type": "input_image", "image_url": "https://x/y.png"}]},
        {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": '{"location":"SF"}'},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "18C"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It is 18C."}]},
        {"role": "user", "content": "thanks"},
    ], "tools": TOOLS, "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False}, 4096)
    assert body["system"] == "Use tools."
    assert body["max_tokens"] == 4096  # the default when max_output_tokens is not given
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in SF?"},
                                     {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"location": "SF"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "It is 18C."}]},
        {"role": "user", "content": "thanks"},
    ]
    assert body["tools"] == [{"name": "get_weather", "description": "Weather now",
                              "input_schema": TOOLS[0]["parameters"]}]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    assert echo.tools == TOOLS and echo.parallel_tool_calls is False


@pytest.mark.parametrize(("extra", "field"), [
    ({"previous_response_id": "resp_1"}, "'previous_response_id'"),
    ({"store": True}, "'store'"),
    ({"background": True}, "'background'"),
    ({"conversation": "conv_1"}, "'conversation'"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type 'web_search'"),
    ({"tools": [TOOLS[0], {"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[1].type 'file_search'"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type 'reasoning'"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0]"),
    ({"include": ["reasoning.encrypted_content"]}, "'include'"),
    ({"tool_choice": {"type": "web_search_preview"}}, "'tool_choice'"),
])
def test_what_cannot_be_carried_is_a_400_naming_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as info:
        responses_to_messages({"input": "hi", **extra}, 4096)
    assert field in info.value.message


# ------------------------------------------------------------------------------ the answer

def codec(tools: list[Any] | None = None) -> AnthropicToResponses:
    return AnthropicToResponses("claude-x", Echo(tools=tools or []), "resp_gw1", created_at=1700000000)


def sdk_events(events: list[Event]) -> list[Any]:
    """Each event as the SDK reads it: its SSE name is its type, the sequence counts from 0."""
    parsed = []
    for number, event in enumerate(events):
        data = orjson.loads(event.data)
        assert event.event == data["type"] and data["sequence_number"] == number
        parsed.append(EVENT.validate_python(data))
    return parsed


def final_of(recorded: Recorded, tools: list[Any] | None = None) -> tuple[list[str], Response]:
    """The event types and the response the SDK's `responses.stream()` state assembles."""
    events = sdk_events(flat(run(codec(tools), recorded)))
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=tools or omit, text_format=omit)
    final = None
    for event in events:
        for handled in state.handle_event(event):
            if handled.type in ("response.completed", "response.incomplete"):
                final = handled.response
    assert final is not None
    return [e.type for e in events], final


def test_a_text_stream_runs_from_created_to_completed() -> None:
    types, final = final_of(ANTHROPIC_TEXT)
    assert types == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * 3, "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert final.output_text == "Hello! How can I help?"
    assert final.status == "completed" and final.id == "resp_gw1" and final.model == "claude-x"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (25, 15, 40)


def test_a_tool_call_is_a_function_call_item_with_argument_deltas() -> None:
    types, final = final_of(ANTHROPIC_TOOL, TOOLS)
    assert types.count("response.function_call_arguments.delta") == 5  # the empty fragment maps to nothing
    assert "response.function_call_arguments.done" in types
    message, call = final.output
    assert message.type == "message" and call.type == "function_call"
    assert call.call_id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}


def test_two_calls_and_cached_prompt_tokens() -> None:
    _, final = final_of(ANTHROPIC_TWO_TOOLS)
    assert [item.call_id for item in final.output] == ["toolu_A", "toolu_B"]  # type: ignore[union-attr]
    assert final.usage is not None
    assert final.usage.input_tokens == 1520 and final.usage.input_tokens_details.cached_tokens == 1000


def test_thinking_maps_to_nothing_and_a_max_tokens_stop_is_incomplete() -> None:
    _, thought = final_of(ANTHROPIC_THINKING)
    assert thought.output_text == "The answer is 4." and len(thought.output) == 1
    types, cut = final_of(ANTHROPIC_MAX_TOKENS)
    assert types[-1] == "response.incomplete" and cut.status == "incomplete"
    assert cut.incomplete_details is not None and cut.incomplete_details.reason == "max_output_tokens"


def test_an_upstream_error_is_one_error_event_and_nothing_after() -> None:
    translator = codec()
    events = flat(run(translator, [*ANTHROPIC_ERROR, ("message_stop", {"type": "message_stop"})]))
    parsed = sdk_events(events)
    assert parsed[-1].type == "error" and parsed[-1].message == "Overloaded"
    assert orjson.loads(events[-1].data)["error"]["message"] == "Overloaded"  # the SDK raises from it
    assert translator.done and translator.failure == "Overloaded"
    assert translator.error_event(504, "timeout", "late") == b""


def test_a_gateway_failure_mid_stream_is_numbered_after_the_last_event() -> None:
    translator = codec()
    sent = flat(run(translator, ANTHROPIC_TEXT[:4]))
    raw = translator.error_event(504, "timeout", "the upstream went silent", code="upstream_timeout")
    data = orjson.loads(raw.split(b"data: ", 1)[1])
    assert raw.startswith(b"event: error\n")
    assert data["sequence_number"] == len(sent) and data["code"] == "upstream_timeout"
    assert data["error"]["type"] == "server_error"
    assert translator.done and translator.feed(*ANTHROPIC_TEXT[4][:1], orjson.dumps(ANTHROPIC_TEXT[4][1]).decode()) == b""


def test_the_non_stream_body_is_a_response_object() -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [{"type": "text", "text": "Checking."},
                           {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"location": "SF"}}],
               "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 12,
                                                     "cache_read_input_tokens": 5}}
    body = message_to_response(message, "claude-x", Echo(instructions="Be brief.", metadata={"k": "v"}),
                               "resp_1", created_at=1)
    response = Response.model_validate(body)
    assert response.output_text == "Checking." and response.instructions == "Be brief."
    call = response.output[1]
    assert call.type == "function_call" and orjson.loads(call.arguments) == {"location": "SF"}
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (35, 12)
    assert response.metadata == {"k": "v"} and response.status == "completed"
