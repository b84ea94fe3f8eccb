"""AnthropicToChat: recorded Anthropic streams -> chat chunks, event by event, read by the openai SDK."""

from __future__ import annotations

import orjson

from gateway.codecs import AnthropicToChat, TokenUsage

from ._codec_streams import (
    ANTHROPIC_ERROR,
    ANTHROPIC_MAX_TOKENS,
    ANTHROPIC_TEXT,
    ANTHROPIC_THINKING,
    ANTHROPIC_TOOL,
    ANTHROPIC_TWO_TOOLS,
    flat,
    openai_chunks,
    openai_final,
    run,
)


def codec(include_usage: bool = True) -> AnthropicToChat:
    return AnthropicToChat(model="claude-x", include_usage=include_usage, created=1700000000, id="chatcmpl-gw1")


def test_text_stream_event_by_event() -> None:
    out = run(codec(), ANTHROPIC_TEXT)
    datas = [[orjson.loads(e.data) if e.data != "[DONE]" else e.data for e in events] for events in out]
    head = {"id": "chatcmpl-gw1", "object": "chat.completion.chunk", "created": 1700000000, "model": "claude-x"}
    assert datas[0] == [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]}]
    assert datas[1] == [] and datas[2] == []  # empty text block start, ping
    assert [d[0]["choices"][0]["delta"] for d in datas[3:6]] == [{"content": "Hello"}, {"content": "!"},
                                                                 {"content": " How can I help?"}]
    assert datas[6] == []  # content_block_stop
    assert datas[7] == [{**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    usage = {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}
    assert datas[8] == [{**head, "choices": [], "usage": usage}, "[DONE]"]


def test_text_stream_is_accepted_by_the_openai_sdk() -> None:
    translator = codec()
    final = openai_final(flat(run(translator, ANTHROPIC_TEXT)))
    assert final.choices[0].message.content == "Hello! How can I help?"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and (final.usage.prompt_tokens, final.usage.completion_tokens) == (25, 15)
    assert translator.done and translator.failure is None
    assert translator.usage == TokenUsage(input_tokens=25, output_tokens=15, reported=True)


def test_without_include_usage_the_stream_ends_with_done_only() -> None:
    out = run(codec(include_usage=False), ANTHROPIC_TEXT)
    assert [e.data for e in out[-1]] == ["[DONE]"]
    assert all(c.usage is None for c in openai_chunks(flat(out)))


def test_tool_call_arguments_arrive_as_fragments_of_one_index() -> None:
    out = run(codec(), ANTHROPIC_TOOL)
    start = orjson.loads(out[4][0].data)["choices"][0]["delta"]
    assert start == {"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]}
    assert out[5] == []  # the empty first input_json_delta maps to nothing
    fragments = [orjson.loads(events[0].data)["choices"][0]["delta"]["tool_calls"][0] for events in out[6:11]]
    assert [f["index"] for f in fragments] == [0] * 5
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    final = openai_final(flat(out))
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.content == "Okay, let's check the weather for San Francisco, CA:"
    calls = final.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert orjson.loads(calls[0].function.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}  # type: ignore[union-attr]


def test_two_tool_calls_get_indices_zero_and_one_and_cache_tokens_count_as_prompt() -> None:
    translator = codec()
    final = openai_final(flat(run(translator, ANTHROPIC_TWO_TOOLS)))
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_A", "get_weather", {"city": "Paris"}), ("toolu_B", "get_time", {"tz": "Europe/Paris"})]
    assert final.usage is not None and final.usage.prompt_tokens == 1520
    assert final.usage.prompt_tokens_details is not None and final.usage.prompt_tokens_details.cached_tokens == 1000
    assert translator.usage == TokenUsage(500, 60, 1000, 20, True)


def test_thinking_becomes_reasoning_content_and_the_signature_nothing() -> None:
    out = run(codec(), ANTHROPIC_THINKING)
    deltas = [orjson.loads(e.data)["choices"][0]["delta"] for e in flat(out[1:5])]
    assert deltas == [{"reasoning_content": "Let me add: "}, {"reasoning_content": "2 + 2 = 4."}]
    assert out[4] == []  # signature_delta
    assert openai_final(flat(out)).choices[0].message.content == "The answer is 4."


def test_max_tokens_finishes_with_length() -> None:
    chunks = openai_chunks(flat(run(codec(), ANTHROPIC_MAX_TOKENS)))
    # (the SDK's accumulator refuses a `length` finish on purpose, so read the chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, None, "length"]


def test_upstream_error_is_one_openai_error_event_and_nothing_after() -> None:
    translator = codec()
    out = run(translator, ANTHROPIC_ERROR)
    assert [orjson.loads(e.data) for e in out[-1]] == [{"error": {
        "message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}}]
    assert translator.done and translator.failure == "Overloaded"
    assert translator.feed("message_stop", '{"type":"message_stop"}') == b""


def test_data_that_is_not_json_fails_the_stream_once() -> None:
    translator = codec()
    translator.feed("message_start", '{"type":"message_start","message":{"usage":{"input_tokens":1}}}')
    out = translator.feed("content_block_delta", "{not json")
    assert orjson.loads(out.removeprefix(b"data: ")) == {"error": {
        "message": "the upstream sent an event that is not JSON", "type": "server_error", "param": None,
        "code": "upstream_error"}}
    assert translator.failure == "the upstream sent an event that is not JSON" and translator.done


def test_gateway_error_event_in_chat_dialect() -> None:
    translator = codec()
    translator.feed("message_start", '{"type":"message_start","message":{}}')
    out = translator.error_event(504, "server_error", "upstream idle too long", code="upstream_timeout")
    assert out == b'data: {"error":{"message":"upstream idle too long","type":"server_error","param":null,"code":"upstream_timeout"}}\n\n'
    assert translator.done and translator.error_event(502, "server_error", "again") == b""


def test_message_stop_without_a_stop_reason_still_finishes() -> None:
    translator = codec(include_usage=False)
    translator.feed("message_start", '{"type":"message_start","message":{}}')
    out = translator.feed("message_stop", '{"type":"message_stop"}')
    assert out == (b'data: {"id":"chatcmpl-gw1","object":"chat.completion.chunk","created":1700000000,'
                   b'"model":"claude-x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                   b"data: [DONE]\n\n")


def test_unknown_events_map_to_nothing() -> None:
    translator = codec()
    assert translator.feed("ping", '{"type":"ping"}') == b""
    assert translator.feed("future_event", '{"type":"future_event","x":1}') == b""
    assert translator.feed("content_block_start", '{"type":"content_block_start","index":0,'
                           '"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}') == b""
    assert not translator.done
