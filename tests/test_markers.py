"""End and error markers on parsed lines (gateway/markers.py), fed whole, byte by byte and in
random splits through the relay's own `LineSplitter`: model text that holds `data: [DONE]`,
`event: message_stop`, `response.completed` or `event: error` is never a marker."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.api.apis import RESPONSES_ENDS, RESPONSES_ERRORS
from gateway.dialects import ANTHROPIC, OPENAI
from gateway.markers import EndWatch, Marker, has_line, line_at, whole_last_line
from gateway.sse import EventParser, LineSplitter

HOSTILE = ["data: [DONE]", "\ndata: [DONE]\n\n", "event: message_stop\n", "\r\nevent: error\r\n",
           "response.completed", "event: response.completed", 'data: {"error": 1}', "\rdata:[DONE]\r",
           '"finish_reason":"stop"', "plain words"]


def chat_chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


def anthropic_event(kind: str, data: dict[str, object]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def text_delta(text: str) -> bytes:
    return anthropic_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})


def watch(stream: bytes, pieces: list[bytes], ends: tuple[Marker, ...], errors: tuple[Marker, ...],
          finishes: bool = True) -> EndWatch:
    watcher, splitter = EndWatch(ends, errors, finishes=finishes), LineSplitter()
    for piece in pieces:
        complete = splitter.feed(piece)
        if complete:
            watcher.feed(complete)
    assert b"".join(pieces) == stream
    return watcher


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def reference(stream: bytes) -> tuple[bool, bool]:
    """(done, failed) for an OpenAI stream, from parsed events."""
    done = failed = False
    for event in EventParser().feed(stream):
        if done:
            break
        if event.data.strip() == "[DONE]":
            done = True
        elif event.data.startswith('{"error"'):
            failed = True
    return done, failed


TEXTS = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12)), max_size=6)


@given(TEXTS, st.booleans(), st.booleans(), st.lists(st.integers(min_value=0, max_value=4000), max_size=25),
       st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_openai_markers_match_the_parsed_events_in_any_split(
    texts: list[str], ended: bool, errored: bool, cuts: list[int], newline: bytes,
) -> None:
    stream = b"".join(chat_chunk(t) for t in texts)
    if errored:
        stream += b'data: {"error": {"message": "overloaded"}}\n\n'
    if ended:
        stream += chat_chunk(finish="stop") + b"data: [DONE]\n\n"
    stream = stream.replace(b"\n", newline)  # JSON strings escape newlines: only framing changes
    expected = reference(stream)
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))], split_at(stream, cuts)):
        got = watch(stream, pieces, OPENAI.end_markers, OPENAI.error_markers)
        assert (got.done, got.failed) == expected
        if not ended:  # the hostile texts hold a finish too, inside their JSON strings
            assert not got.finished


@given(TEXTS, st.booleans(), st.lists(st.integers(min_value=0, max_value=4000), max_size=25))
def test_anthropic_markers_are_event_lines_never_text(texts: list[str], ended: bool, cuts: list[int]) -> None:
    stream = anthropic_event("message_start", {"message": {"stop_reason": None}})
    stream += b"".join(text_delta(t) for t in texts)
    if ended:
        stream += anthropic_event("message_delta", {"delta": {"stop_reason": "end_turn"}})
        stream += anthropic_event("message_stop", {})
    for pieces in ([stream], split_at(stream, cuts)):
        got = watch(stream, pieces, ANTHROPIC.end_markers, ANTHROPIC.error_markers)
        assert (got.done, got.failed) == (ended, False)
        if not ended:
            assert not got.finished


def test_a_finish_without_its_end_marker_is_seen_and_a_null_one_is_not() -> None:
    stream = chat_chunk("hi") + chat_chunk(finish="stop")
    got = watch(stream, [stream], OPENAI.end_markers, OPENAI.error_markers)
    assert (got.done, got.finished) == (False, True)
    got = watch(chat_chunk("hi"), [chat_chunk("hi")], OPENAI.end_markers, OPENAI.error_markers)
    assert not got.finished
    stream = (anthropic_event("message_start", {"message": {"stop_reason": None}}) + text_delta("x")
              + anthropic_event("message_delta", {"delta": {"stop_reason": "end_turn"}}))
    got = watch(stream, [stream], ANTHROPIC.end_markers, ANTHROPIC.error_markers)
    assert (got.done, got.finished) == (False, True)


def test_responses_end_events_are_event_lines_never_text() -> None:
    text = orjson.dumps({"type": "response.output_text.delta",
                         "delta": "response.completed\nevent: response.completed\n"})
    cut = b"event: response.output_text.delta\ndata: " + text + b"\n\n"
    got = watch(cut, [cut], RESPONSES_ENDS, RESPONSES_ERRORS, finishes=False)
    assert (got.done, got.failed) == (False, False)
    for kind in (b"response.completed", b"response.failed", b"response.incomplete"):
        whole = cut + b"event: " + kind + b'\ndata: {"type":"' + kind + b'"}\n\n'
        assert watch(whole, [whole], RESPONSES_ENDS, RESPONSES_ERRORS, finishes=False).done
    failed = cut + b'event: error\ndata: {"type":"error"}\n\n'
    assert watch(failed, [failed], RESPONSES_ENDS, RESPONSES_ERRORS, finishes=False).failed


@pytest.mark.parametrize(("complete", "found"), [
    (b"data: [DONE]\n", 0), (b"x\ndata: [DONE]\r\n", 2), (b"x\rdata: [DONE]\r", 2),
    (b'data: {"t": "data: [DONE]"}\n', -1), (b"data: [DONE]x\n", -1), (b" data: [DONE]\n", -1),
])
def test_line_at_needs_a_line_start_and_a_line_end(complete: bytes, found: int) -> None:
    assert line_at(complete, Marker(b"data: [DONE]")) == found


def test_prefix_markers_need_only_the_line_start() -> None:
    assert has_line(b'x\ndata: {"error": 1}\n', (Marker(b'data: {"error"', whole=False),))
    assert not has_line(b'data: {"t": "data: {\\"error\\""}\n', (Marker(b'data: {"error"', whole=False),))


@pytest.mark.parametrize(("rest", "whole"), [
    (b"data: [DONE]", b"data: [DONE]\n\n"),
    (b'data: {"choices": []}', b'data: {"choices": []}\n\n'),
    (b'data: {"choices":[{"del', None), (b"event: message_stop", None), (b": ping", None), (b"da", None),
])
def test_a_last_line_without_its_end_is_a_whole_event_or_a_cut(rest: bytes, whole: bytes | None) -> None:
    assert whole_last_line(rest) == whole
