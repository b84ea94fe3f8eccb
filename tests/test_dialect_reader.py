"""Every stream codec reads its upstream through one reader (`dialects/reader.py`): the
dialect decides what is its error event (message, type, code), a line that is not JSON is a
failure of its own, and usage is folded as the dialect reports it (Anthropic's input at
message_start, cumulative output at message_delta; OpenAI's usage chunk)."""

from __future__ import annotations

import orjson

from gateway.codecs import AnthropicToChat, ChatToAnthropic, SimpleCodec
from gateway.codecs.anthropic_to_responses import AnthropicToResponses
from gateway.codecs.responses_request import responses_to_messages
from gateway.dialects import ANTHROPIC, OPENAI
from gateway.dialects.reader import NOT_JSON, StreamFailure, StreamReader


def test_anthropic_usage_is_read_at_message_start_and_message_delta() -> None:
    reader = StreamReader(ANTHROPIC)
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1,
                                                            "cache_read_input_tokens": 4}}}
    assert reader.read("message_start", orjson.dumps(start).decode()) == start
    reader.read("ping", '{"type":"ping"}')
    reader.read("message_delta", '{"type":"message_delta","delta":{},"usage":{"output_tokens":7}}')
    usage = reader.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens, usage.reported) == (9, 4, 7, True)


def test_the_upstreams_error_event_and_a_line_that_is_not_json_are_failures() -> None:
    reader = StreamReader(ANTHROPIC)
    failed = reader.read("error", '{"type":"error","error":{"type":"overloaded_error","message":"busy"}}')
    assert failed == StreamFailure("busy", "overloaded_error")
    assert reader.read("content_block_delta", "{not json") == StreamFailure(NOT_JSON, not_json=True)
    openai = StreamReader(OPENAI)
    chunk = '{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}'
    assert openai.read("", chunk) == StreamFailure("slow down", "requests", "rate_limit_exceeded")
    assert openai.read("", '{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}') == {
        "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    assert (openai.usage.prompt_tokens, openai.usage.output_tokens) == (5, 2)


def test_every_codec_reports_the_upstreams_failure_as_read() -> None:
    error = '{"type":"error","error":{"type":"api_error","message":"it broke"}}'
    _, echo = responses_to_messages({"model": "m", "input": "hi"}, 64)
    codecs = [AnthropicToChat("m", False, 0, "c"), AnthropicToResponses("m", echo, "r", 0),
              SimpleCodec("anthropic")]
    for codec in codecs:
        assert codec.feed("error", error) and codec.done and codec.failure == "it broke"
    to_anthropic = ChatToAnthropic("m", "msg")
    assert to_anthropic.feed("", '{"error":{"message":"it broke"}}').startswith(b"event: error")
    assert to_anthropic.failure == "it broke"
    for codec in [AnthropicToChat("m", False, 0, "c"), ChatToAnthropic("m", "msg"), SimpleCodec("openai")]:
        codec.feed("", "not json")
        assert codec.failure == NOT_JSON and codec.done
