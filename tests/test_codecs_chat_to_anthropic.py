"""ChatToAnthropic: recorded OpenAI chat streams -> Anthropic events, event by event, read by the anthropic SDK."""

from __future__ import annotations

import orjson

from gateway.codecs import ChatToAnthropic, TokenUsage

from ._codec_streams import (
    OPENAI_ERROR,
    OPENAI_REASONING,
    OPENAI_TEXT,
    OPENAI_TOOL,
    OPENAI_TWO_TOOLS,
    anthropic_events,
    anthropic_final,
    flat,
    run,
)


def codec() -> ChatToAnthropic:
    return ChatToAnthropic(model="gpt-x", id="msg_gw1")


def names(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.event for e in events]


def test_text_stream_event_by_event() -> None:
    out = run(codec(), OPENAI_TEXT)
    assert [names(events) for events in out] == [
        ["message_start"],
        ["content_block_start", "content_block_delta"],
        ["content_block_delta"],
        ["content_block_delta"],
        ["content_block_stop"],  # finish_reason closes the block at once
        [],  # the usage chunk only updates usage
        ["message_delta", "message_stop"],
    ]
    start = orjson.loads(out[0][0].data)
    assert start == {"type": "message_start", "message": {
        "id": "msg_gw1", "type": "message", "role": "assistant", "model": "gpt-x", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}
    assert [orjson.loads(e.data) for e in out[1]] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}]
    assert orjson.loads(out[-1][0].data) == {"type": "message_delta", "delta": {
        "stop_reason": "end_turn", "stop_sequence": None}, "usage": {"input_tokens": 19, "output_tokens": 9}}


def test_text_stream_is_accepted_by_the_anthropic_sdk() -> None:
    translator = codec()
    message = anthropic_final(flat(run(translator, OPENAI_TEXT)))
    assert [(b.type, b.text) for b in message.content] == [("text", "Hello! How can I help?")]  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (19, 9)
    assert translator.done and translator.failure is None
    assert translator.usage == TokenUsage(input_tokens=19, output_tokens=9, reported=True)


def test_tool_call_fragments_become_input_json_deltas_of_one_block() -> None:
    out = run(codec(), OPENAI_TOOL)
    assert names(out[0]) == ["message_start", "content_block_start"]
    assert orjson.loads(out[0][1].data)["content_block"] == {"type": "tool_use", "id": "call_DdmO9",
                                                           "name": "get_weather", "input": {}}
    fragments = [orjson.loads(e.data) for e in flat(out[1:6])]
    assert {f["index"] for f in fragments} == {0}
    assert "".join(f["delta"]["partial_json"] for f in fragments) == '{"location":"Boston, MA"}'
    message = anthropic_final(flat(out))
    assert message.stop_reason == "tool_use"
    assert [(b.type, b.id, b.name, b.input) for b in message.content] == [  # type: ignore[union-attr]
        ("tool_use", "call_DdmO9", "get_weather", {"location": "Boston, MA"})]


def test_a_new_tool_call_index_closes_the_open_block_and_opens_the_next() -> None:
    translator = codec()
    out = run(translator, OPENAI_TWO_TOOLS)
    assert names(out[1]) == ["content_block_stop", "content_block_start"]  # text closed, call_A opened
    assert names(out[3]) == ["content_block_stop", "content_block_start"]  # call_A closed, call_B opened
    assert [orjson.loads(e.data)["index"] for e in out[3]] == [1, 2]
    message = anthropic_final(flat(out))
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert [b.input for b in message.content[1:]] == [{"city": "Paris"}, {"tz": "Europe/Paris"}]  # type: ignore[union-attr]
    # OpenAI's prompt_tokens include the cached ones; Anthropic's input_tokens do not
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (176, 1024)
    assert translator.usage == TokenUsage(176, 40, 1024, 0, True)


def test_reasoning_content_becomes_a_thinking_block_and_length_max_tokens() -> None:
    message = anthropic_final(flat(run(codec(), OPENAI_REASONING)))
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "2 + 2 = 4." and message.content[1].text == "It is 4."  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"


def test_upstream_error_chunk_is_one_anthropic_error_event() -> None:
    translator = codec()
    out = run(translator, OPENAI_ERROR)
    assert [orjson.loads(e.data) for e in out[-1]] == [{"type": "error", "error": {
        "type": "api_error", "message": "The server had an error"}}]
    anthropic_events(flat(out))  # every event, the error included, is one the SDK reads
    assert translator.done and translator.failure == "The server had an error"
    assert translator.feed("message", "[DONE]") == b""


def test_rate_limit_error_chunk_keeps_its_kind() -> None:
    translator = codec()
    out = translator.feed("message", '{"error":{"message":"slow","type":"requests","code":"rate_limit_exceeded"}}')
    assert out == (b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow"}}\n\n')


def test_done_without_any_chunk_still_makes_a_valid_empty_message() -> None:
    out = run(codec(), [("message", "[DONE]")])
    assert names(out[0]) == ["message_start", "message_delta", "message_stop"]
    assert anthropic_final(out[0]).content == []


def test_gateway_error_event_in_anthropic_dialect() -> None:
    translator = codec()
    translator.feed("message", '{"choices":[{"index":0,"delta":{"content":"x"}}]}')
    assert translator.error_event(504, "timeout_error", "idle") == (
        b'event: error\ndata: {"type":"error","error":{"type":"timeout_error","message":"idle"}}\n\n')
    assert translator.done


def test_data_that_is_not_json_fails_the_stream() -> None:
    translator = codec()
    out = translator.feed("message", "{oops")
    assert orjson.loads(out.split(b"data: ", 1)[1]) == {"type": "error", "error": {
        "type": "api_error", "message": "the upstream sent an event that is not JSON"}}
    assert translator.done


def test_only_choice_zero_is_translated() -> None:
    translator = codec()
    translator.feed("message", '{"choices":[{"index":0,"delta":{"role":"assistant"}}]}')
    out = translator.feed("message", '{"choices":[{"index":1,"delta":{"content":"other"}}]}')
    assert out == b""
