"""SimpleCodec: upstream events of either dialect -> the browser's simple events."""

from __future__ import annotations

import orjson
import pytest

from gateway.codecs import SimpleCodec, TokenUsage

from ._codec_streams import (
    ANTHROPIC_ERROR,
    ANTHROPIC_TEXT,
    ANTHROPIC_TOOL,
    OPENAI_ERROR,
    OPENAI_TEXT,
    Recorded,
    data_of,
)


def feed_all(codec: SimpleCodec, recorded: Recorded) -> list[bytes]:
    return [codec.feed(event, data_of(payload)) for event, payload in recorded]


def message(text: str) -> bytes:
    return b"event: message\ndata: " + orjson.dumps({"content": text, "done": False}) + b"\n\n"


@pytest.mark.parametrize(("dialect", "recorded", "usage"), [
    ("openai", OPENAI_TEXT, TokenUsage(19, 9, 0, 0, True)),
    ("anthropic", ANTHROPIC_TEXT, TokenUsage(25, 15, 0, 0, True)),
])
def test_text_stream_to_simple_events(dialect: str, recorded: Recorded, usage: TokenUsage) -> None:
    codec = SimpleCodec(dialect)
    out = b"".join(feed_all(codec, recorded))
    assert out == message("Hello") + message("!") + message(" How can I help?") + b"event: done\ndata: {}\n\n"
    assert codec.done and codec.usage == usage


def test_tool_calls_send_only_the_text() -> None:
    out = b"".join(feed_all(SimpleCodec("anthropic"), ANTHROPIC_TOOL))
    assert out == message("Okay, let's check the weather for San Francisco, CA:") + b"event: done\ndata: {}\n\n"


@pytest.mark.parametrize(("dialect", "recorded", "text"), [
    ("openai", OPENAI_ERROR, "The server had an error"),
    ("anthropic", ANTHROPIC_ERROR, "Overloaded"),
])
def test_upstream_error_is_one_error_event(dialect: str, recorded: Recorded, text: str) -> None:
    codec = SimpleCodec(dialect)
    out = feed_all(codec, recorded)
    assert out[-1] == b"event: error\ndata: " + orjson.dumps({"code": 502, "message": f"upstream error: {text}"}) + b"\n\n"
    assert codec.failure == text and codec.done
    assert codec.feed("message", "[DONE]") == b""


def test_not_json_and_gateway_errors() -> None:
    codec = SimpleCodec("openai")
    assert codec.feed("message", "nope") == b'event: error\ndata: {"code":502,"message":"the upstream sent an event that is not JSON"}\n\n'
    other = SimpleCodec("anthropic")
    assert other.error_event(504, "timeout_error", "idle") == b'event: error\ndata: {"code":504,"message":"idle"}\n\n'
    assert other.error_event(502, "api_error", "twice") == b""
