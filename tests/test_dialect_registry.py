"""The dialect registry: each dialect reads its own finish reasons, ends, errors and "prompt too
long"; finish reasons cross dialects through ONE table (the Anthropic dialect's), which the
codecs and a mid-stream resume both read (they disagreed on `content_filter`); a translation
is looked up by (client dialect, upstream dialect)."""

from __future__ import annotations

import orjson
import pytest

from gateway.codecs import AnthropicToChat, ChatToAnthropic
from gateway.codecs.registry import TRANSLATIONS, translation
from gateway.dialects import ANTHROPIC, DIALECTS, OPENAI, Usage, UsageMeter
from gateway.errors import UpstreamTimeout
from gateway.relay.resume import ClientView, Splice
from gateway.shapes import ANTHROPIC_SHAPE, ANTHROPIC_TYPES
from gateway.upstream.attempt import prompt_too_long


def test_finish_reasons_cross_dialects_through_one_table() -> None:
    for reason, stop in ANTHROPIC.finish_from_openai.items():
        assert ANTHROPIC.finish_in(reason, OPENAI) == stop
    for stop, reason in ANTHROPIC.finish_to_openai.items():
        assert OPENAI.finish_in(stop, ANTHROPIC) == reason
    assert ANTHROPIC.finish_in("content_filter", OPENAI) == "refusal"
    assert OPENAI.finish_in("refusal", ANTHROPIC) == "content_filter"
    assert OPENAI.finish_in("content_filter", OPENAI) == "content_filter"  # same dialect: as it is


async def test_a_resumed_anthropic_stream_ends_with_the_codecs_stop_reason() -> None:
    """An OpenAI continuation that ends on `content_filter`, spliced into an Anthropic client's
    stream: `refusal`, as the OpenAI -> Anthropic codec says (the resume said `end_turn`)."""
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    view = ClientView(ANTHROPIC.client_spot(False))
    view.feed(b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
              b'"content_block":{"type":"text","text":""}}\n\n')
    splice = Splice(write, ANTHROPIC_SHAPE, view, OPENAI, Usage(), UsageMeter(OPENAI, 0))
    chunk = {"choices": [{"index": 0, "delta": {"content": "more"}, "finish_reason": None}]}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}
    await splice.lines(b"data: " + orjson.dumps(chunk) + b"\n\ndata: " + orjson.dumps(end)
                       + b"\n\ndata: [DONE]\n\n")
    deltas = [orjson.loads(line[6:]) for line in b"".join(written).split(b"\n")
              if line.startswith(b"data: ")]
    assert deltas[0]["delta"] == {"type": "text_delta", "text": "more"}
    (stop,) = [d for d in deltas if d["type"] == "message_delta"]
    assert stop["delta"]["stop_reason"] == "refusal"
    codec = ChatToAnthropic("m", "msg_1")
    codec.feed("", orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}}]}).decode())
    out = codec.feed("", orjson.dumps(end).decode()) + codec.feed("", "[DONE]")
    assert b'"stop_reason":"refusal"' in out  # the codec agrees


@pytest.mark.parametrize(("body", "too_long"), [
    ({"error": {"code": "context_length_exceeded", "message": "x"}}, True),
    ({"type": "error", "error": {"type": "invalid_request_error",
                                 "message": "prompt is too long: 300000 tokens > 200000 maximum"}}, True),
    ({"error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}, False),
    ({"error": "prompt is too long"}, False),
])
def test_each_dialect_recognises_its_prompt_too_long(body: dict[str, object], too_long: bool) -> None:
    assert prompt_too_long(orjson.dumps(body)) is too_long
    error = body["error"]
    found = [name for name, d in DIALECTS.items() if isinstance(error, dict) and d.prompt_too_long(error)]
    assert len(found) == (1 if too_long else 0)


def test_translations_are_looked_up_by_client_and_upstream_dialect() -> None:
    assert set(TRANSLATIONS) == {("openai", "anthropic"), ("anthropic", "openai")}
    assert isinstance(translation("openai", "anthropic").stream("m", True), AnthropicToChat)
    assert isinstance(translation("anthropic", "openai").stream("m", False), ChatToAnthropic)
    with pytest.raises(KeyError):
        translation("openai", "openai")  # same dialect: bytes pass through, no codec


def test_a_codec_writes_the_gateways_error_in_its_clients_dialect() -> None:
    exc = UpstreamTimeout("idle")
    openai = orjson.loads(translation("openai", "anthropic").stream("m", False).gateway_error(exc)[6:])
    assert openai["error"]["message"] == "idle" and openai["error"]["code"] == exc.code
    event = translation("anthropic", "openai").stream("m", False).gateway_error(exc)
    assert event.startswith(b"event: error\n")
    assert orjson.loads(event.split(b"data: ", 1)[1])["error"] == {
        "type": ANTHROPIC_TYPES[exc.kind], "message": "idle"}
