"""Non-stream answers and upstream error bodies translated between the dialects, read by the SDKs."""

from __future__ import annotations

import orjson
import pytest
from anthropic.types import Message
from anthropic.types.shared import ErrorResponse
from openai.types.chat import ChatCompletion

from gateway.codecs import completion_to_message, message_to_completion, translate_error_body

ANTHROPIC_MESSAGE = {
    "id": "msg_01XF", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "thinking", "thinking": "They want weather.", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Oslo"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 50,
              "cache_creation_input_tokens": 0},
}

OPENAI_COMPLETION = {
    "id": "chatcmpl-B9", "object": "chat.completion", "created": 1741570283, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "Let me check.", "refusal": None, "annotations": [],
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        "logprobs": None, "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0}},
}


def test_anthropic_message_to_chat_completion() -> None:
    body = message_to_completion(ANTHROPIC_MESSAGE, "claude-x", created=1700000000)
    assert body == {
        "id": "msg_01XF", "object": "chat.completion", "created": 1700000000, "model": "claude-x",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.", "refusal": None,
            "reasoning_content": "They want weather.",
            "tool_calls": [{"id": "toolu_01", "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]}}],
        "usage": {"prompt_tokens": 150, "completion_tokens": 20, "total_tokens": 170,
                  "prompt_tokens_details": {"cached_tokens": 50}},
    }
    ChatCompletion.model_validate(body)


def test_chat_completion_to_anthropic_message() -> None:
    body = completion_to_message(OPENAI_COMPLETION, "gpt-x")
    assert body == {
        "id": "chatcmpl-B9", "type": "message", "role": "assistant", "model": "gpt-x",
        "content": [{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 93, "output_tokens": 46, "cache_read_input_tokens": 1024},
    }
    Message.model_validate(body)


@pytest.mark.parametrize(("stop", "finish"), [("end_turn", "stop"), ("max_tokens", "length"),
                                              ("stop_sequence", "stop"), ("tool_use", "tool_calls"),
                                              ("refusal", "content_filter"), (None, "stop")])
def test_stop_reason_to_finish_reason(stop: str | None, finish: str) -> None:
    body = {**ANTHROPIC_MESSAGE, "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert message_to_completion(body, "m", created=1)["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"),
                                              ("tool_calls", "tool_use"), ("content_filter", "refusal")])
def test_finish_reason_to_stop_reason(finish: str, stop: str) -> None:
    body = {**OPENAI_COMPLETION, "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                                              "finish_reason": finish}]}
    assert completion_to_message(body, "m")["stop_reason"] == stop


@pytest.mark.parametrize(("body", "status", "expected"), [
    (b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}', 429,
     {"error": {"message": "Number of requests has exceeded your rate limit", "type": "rate_limit_error", "param": None,
                "code": "rate_limit_exceeded"}}),
    (b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}', 400,
     {"error": {"message": "prompt is too long: 210000 tokens > 200000 maximum", "type": "invalid_request_error",
                "param": None, "code": "invalid_request"}}),
    (b'{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}', 404,
     {"error": {"message": "model: claude-nope", "type": "invalid_request_error", "param": None, "code": "not_found"}}),
    (b"<html>Bad Gateway</html>", 400,
     {"error": {"message": "the upstream answered 400", "type": "invalid_request_error", "param": None,
                "code": "invalid_request"}}),
])
def test_anthropic_error_body_to_openai(body: bytes, status: int, expected: dict[str, object]) -> None:
    assert orjson.loads(translate_error_body(body, "anthropic", "openai", status)) == expected


@pytest.mark.parametrize(("body", "status", "expected"), [
    (b'{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}', 429,
     ("rate_limit_error", "Rate limit reached for gpt-4o")),
    (b'{"error":{"message":"This model\'s maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}', 400,
     ("invalid_request_error", "This model's maximum context length is 128000 tokens.")),
    (b'{"error":{"message":"The model `gpt-9` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}', 404,
     ("not_found_error", "The model `gpt-9` does not exist")),
    (b'{"error":"plain text error"}', 422, ("invalid_request_error", "plain text error")),
    (b"not json", 413, ("request_too_large", "the upstream answered 413")),
    (b"[]", 404, ("not_found_error", "the upstream answered 404")),
])
def test_openai_error_body_to_anthropic(body: bytes, status: int, expected: tuple[str, str]) -> None:
    out = orjson.loads(translate_error_body(body, "openai", "anthropic", status))
    assert out == {"type": "error", "error": {"type": expected[0], "message": expected[1]}}
    if expected[0] != "request_too_large":  # documented by Anthropic for 413, not modelled by the SDK
        ErrorResponse.model_validate(out)


def test_unknown_dialect_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        translate_error_body(b"{}", "openai", "gemini", 400)
