"""Recorded stream shapes of both providers (written from their documented stream formats),
and the helpers the codec tests share: run a codec, read its SSE, validate it with the SDKs."""

from __future__ import annotations

from typing import Any

import orjson
from anthropic.lib.streaming._messages import accumulate_event  # the SDK's own stream accumulator
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from gateway.codecs import StreamCodec
from gateway.sse import Event, EventParser

Recorded = list[tuple[str, Any]]  # (SSE event name, JSON payload or the raw data string)

ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)


def _start(message_id: str, input_tokens: int, **usage: int) -> tuple[str, Any]:
    message = {"id": message_id, "type": "message", "role": "assistant", "content": [],
               "model": "claude-sonnet-4-5", "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage}}
    return "message_start", {"type": "message_start", "message": message}


def _block(index: int, block: dict[str, Any]) -> tuple[str, Any]:
    return "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict[str, Any]) -> tuple[str, Any]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def _text(index: int, text: str) -> tuple[str, Any]:
    return _delta(index, {"type": "text_delta", "text": text})


def _json(index: int, fragment: str) -> tuple[str, Any]:
    return _delta(index, {"type": "input_json_delta", "partial_json": fragment})


def _stop(index: int) -> tuple[str, Any]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def _end(reason: str, output_tokens: int) -> Recorded:
    return [("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                               "usage": {"output_tokens": output_tokens}}),
            ("message_stop", {"type": "message_stop"})]


PING = ("ping", {"type": "ping"})

ANTHROPIC_TEXT: Recorded = [
    _start("msg_01Text", 25), _block(0, {"type": "text", "text": ""}), PING,
    _text(0, "Hello"), _text(0, "!"), _text(0, " How can I help?"), _stop(0), *_end("end_turn", 15),
]

# Anthropic's documented tool-use stream: a text block, then the call, its input in fragments.
ANTHROPIC_TOOL: Recorded = [
    _start("msg_01Tool", 472), _block(0, {"type": "text", "text": ""}),
    _text(0, "Okay, let's check the weather for San Francisco, CA:"), _stop(0),
    _block(1, {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}),
    _json(1, ""), _json(1, '{"location":'), _json(1, ' "San Fra'), _json(1, 'ncisco, CA"'),
    _json(1, ', "unit": "fah'), _json(1, 'renheit"}'), _stop(1), *_end("tool_use", 89),
]

ANTHROPIC_TWO_TOOLS: Recorded = [
    _start("msg_01Two", 500, cache_read_input_tokens=1000, cache_creation_input_tokens=20),
    _block(0, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
    _json(0, '{"city": '), _json(0, '"Paris"}'), _stop(0),
    _block(1, {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}),
    _json(1, '{"tz": "Europe/'), _json(1, 'Paris"}'), _stop(1), *_end("tool_use", 60),
]

ANTHROPIC_THINKING: Recorded = [
    _start("msg_01Think", 40), _block(0, {"type": "thinking", "thinking": "", "signature": ""}),
    _delta(0, {"type": "thinking_delta", "thinking": "Let me add: "}),
    _delta(0, {"type": "thinking_delta", "thinking": "2 + 2 = 4."}),
    _delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}), _stop(0),
    _block(1, {"type": "text", "text": ""}), _text(1, "The answer is "), _text(1, "4."), _stop(1),
    *_end("end_turn", 30),
]

ANTHROPIC_MAX_TOKENS: Recorded = [
    _start("msg_01Cut", 10), _block(0, {"type": "text", "text": ""}), _text(0, "Once upon"), _stop(0),
    *_end("max_tokens", 3),
]

ANTHROPIC_ERROR: Recorded = [
    _start("msg_01Err", 12), _block(0, {"type": "text", "text": ""}), _text(0, "Par"),
    ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
]


def _chunk(delta: dict[str, Any], finish: str | None = None, cid: str = "chatcmpl-9x") -> tuple[str, Any]:
    return "message", {"id": cid, "object": "chat.completion.chunk", "created": 1718000000,
                       "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_44709d6fcb",
                       "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def _usage(prompt: int, completion: int, cached: int = 0) -> tuple[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0}}
    return "message", {"id": "chatcmpl-9x", "object": "chat.completion.chunk", "created": 1718000000,
                       "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": usage}


DONE = ("message", "[DONE]")


def _call(index: int, fragment: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": fragment}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return call


OPENAI_TEXT: Recorded = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Hello"}), _chunk({"content": "!"}), _chunk({"content": " How can I help?"}),
    _chunk({}, "stop"), _usage(19, 9, cached=0), DONE,
]

OPENAI_TOOL: Recorded = [
    _chunk({"role": "assistant", "content": None, "tool_calls": [_call(0, "", "call_DdmO9", "get_weather")]}),
    _chunk({"tool_calls": [_call(0, '{"')]}), _chunk({"tool_calls": [_call(0, "location")]}),
    _chunk({"tool_calls": [_call(0, '":"')]}), _chunk({"tool_calls": [_call(0, "Boston")]}),
    _chunk({"tool_calls": [_call(0, ', MA"}')]}), _chunk({}, "tool_calls"), _usage(82, 17), DONE,
]

OPENAI_TWO_TOOLS: Recorded = [
    _chunk({"role": "assistant", "content": "Checking both."}),
    _chunk({"tool_calls": [_call(0, "", "call_A", "get_weather")]}),
    _chunk({"tool_calls": [_call(0, '{"city": "Paris"}')]}),
    _chunk({"tool_calls": [_call(1, "", "call_B", "get_time")]}),
    _chunk({"tool_calls": [_call(1, '{"tz": ')]}), _chunk({"tool_calls": [_call(1, '"Europe/Paris"}')]}),
    _chunk({}, "tool_calls"), _usage(1200, 40, cached=1024), DONE,
]

OPENAI_REASONING: Recorded = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"reasoning_content": "2 + 2 "}), _chunk({"reasoning_content": "= 4."}),
    _chunk({"content": "It is 4."}), _chunk({}, "length"), DONE,
]

OPENAI_ERROR: Recorded = [
    _chunk({"role": "assistant", "content": ""}), _chunk({"content": "Par"}),
    ("message", {"error": {"message": "The server had an error", "type": "server_error", "param": None,
                           "code": None}}),
]


def data_of(payload: Any) -> str:
    return payload if isinstance(payload, str) else orjson.dumps(payload).decode()


def run(codec: StreamCodec, recorded: Recorded) -> list[list[Event]]:
    """Feed each recorded event; the client events each one produced, parsed back from bytes."""
    out = []
    for event, payload in recorded:
        parser = EventParser()
        out.append(parser.feed(codec.feed(event, data_of(payload))))
    return out


def flat(per_event: list[list[Event]]) -> list[Event]:
    return [e for events in per_event for e in events]


def openai_chunks(events: list[Event]) -> list[ChatCompletionChunk]:
    """Every chunk as the openai SDK reads it (so the SDK accepts it); [DONE] must be last."""
    assert events[-1].data == "[DONE]"
    assert all(e.event == "message" for e in events)
    return [ChatCompletionChunk.model_validate_json(e.data) for e in events[:-1]]


def openai_final(events: list[Event]) -> ChatCompletion:
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for chunk in openai_chunks(events):
        state.handle_chunk(chunk)
    return state.get_final_completion()


def anthropic_events(events: list[Event]) -> list[Any]:
    """Every event as the anthropic SDK reads it; the SSE event name must match its `type`."""
    parsed = []
    for e in events:
        data = orjson.loads(e.data)
        assert data["type"] == e.event
        if e.event == "error":
            parsed.append(ErrorResponse.model_validate(data))
        else:
            parsed.append(ANTHROPIC_EVENT.validate_python(data))
    return parsed


def anthropic_final(events: list[Event]) -> Message:
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in anthropic_events(events):
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    return snapshot
