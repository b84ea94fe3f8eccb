"""Dialects without I/O: usage metering from stream bytes, error shapes, simple-event mapping."""

from __future__ import annotations

import orjson

from gateway.dialects import ANTHROPIC, OPENAI, UsageMeter
from gateway.errors import RateLimited, UpstreamTimeout
from gateway.shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, SIMPLE_SHAPE

OPENAI_STREAM = (
    b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":" there"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}\n\n'
    b"data: [DONE]\n\n"
)
ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def test_openai_reported_usage_wins_over_the_estimate() -> None:
    meter = UsageMeter(OPENAI, prompt_estimate=100)
    for line in OPENAI_STREAM.split(b"\n\n"):
        meter.observe(line + b"\n\n")
    assert (meter.usage.prompt_tokens, meter.usage.completion_tokens, meter.usage.reported) == (7, 2, True)


def test_stream_cut_short_is_estimated_from_data_lines() -> None:
    meter = UsageMeter(OPENAI, prompt_estimate=100)
    meter.observe(OPENAI_STREAM[: OPENAI_STREAM.index(b"data: {\"choices\":[],")])
    assert meter.usage.prompt_tokens == 100 and meter.usage.completion_tokens == 3
    assert not meter.usage.reported


def test_anthropic_usage_from_message_start_and_delta() -> None:
    meter = UsageMeter(ANTHROPIC, prompt_estimate=1)
    meter.observe(ANTHROPIC_STREAM)
    assert (meter.usage.prompt_tokens, meter.usage.completion_tokens, meter.usage.reported) == (11, 5, True)


def test_usage_in_non_stream_bodies() -> None:
    usage = OPENAI.usage_from_body({"usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    assert usage is not None and usage.total == 7
    usage = ANTHROPIC.usage_from_body({"usage": {"input_tokens": 3, "output_tokens": 4,
                                                 "cache_read_input_tokens": 10}})
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (13, 4)
    assert OPENAI.usage_from_body({"usage": "nope"}) is None


def test_error_shapes() -> None:
    exc = RateLimited("slow down", bucket="requests", retry_after=2)
    assert OPENAI_SHAPE.body(exc) == {"error": {"message": "slow down", "type": "rate_limit_error",
                                                "code": "rate_limit_exceeded"}}
    assert ANTHROPIC_SHAPE.body(exc) == {"type": "error", "error": {"type": "rate_limit_error",
                                                                   "message": "slow down"}}
    assert SIMPLE_SHAPE.body(exc) == {"code": 429, "message": "slow down"}
    event = ANTHROPIC_SHAPE.event(UpstreamTimeout("idle"))
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert orjson.loads(OPENAI_SHAPE.event(UpstreamTimeout("idle"))[6:])["error"]["code"] == "upstream_timeout"
    assert SIMPLE_SHAPE.answer(exc) == (b'event: error\ndata: {"code":429,"message":"slow down"}\n\n',
                                        "text/event-stream")


def test_text_deltas_and_final_events() -> None:
    assert OPENAI.text_delta("message", {"choices": [{"delta": {"content": "x"}}]}) == "x"
    assert OPENAI.text_delta("message", {"choices": []}) is None
    assert OPENAI.is_final("message", "[DONE]")
    assert ANTHROPIC.text_delta("content_block_delta", {"type": "content_block_delta",
                                                        "delta": {"type": "text_delta", "text": "y"}}) == "y"
    assert ANTHROPIC.is_final("message_stop", "{}")
    assert ANTHROPIC.stream_error("error", {"type": "error", "error": {"message": "overloaded"}}) == "overloaded"


def test_simple_requests_per_dialect() -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "hi"}]}
    anthropic = ANTHROPIC.simple_request(body)
    assert anthropic["system"] == "be brief" and anthropic["messages"] == [{"role": "user", "content": "hi"}]
    assert anthropic["stream"] is True and anthropic["max_tokens"] > 0
    openai = OPENAI.simple_request(body)
    assert openai["messages"] == body["messages"] and openai["stream_options"] == {"include_usage": True}
