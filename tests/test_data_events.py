"""The relay's per-read fast check (`sse.data_events`): a read it counts as k `data:`
events is all SSE (`sse_prefix` takes all of it), and the meter given that count estimates
exactly what it does counting the lines itself; anything else is left to those two."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects import OPENAI, UsageMeter
from gateway.sse import data_events, sse_prefix

LINES = [
    b'data: {"choices":[{"delta":{"content":"a\\ndata: x"}}]}',
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}',
    b"data: [DONE]",
    b"data:[DONE]",
    b"data: [DONE] and more",
    b"data:",
    b"event: message",
    b": ping",
    b"id: 7",
    b"<html>",
    b"",
]
ENDINGS = [b"\n", b"\n", b"\n", b"\r\n", b"\r"]

reads = st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from(ENDINGS)), min_size=1,
                 max_size=12).map(lambda parts: b"".join(line + end for line, end in parts))
#: reads as most upstreams send them: `data:` events, each with its blank line
events = st.lists(st.sampled_from(LINES[:6]), min_size=1, max_size=12).map(
    lambda lines: b"".join(line + b"\n\n" for line in lines))


def metered(complete: bytes, count: int) -> int:
    meter = UsageMeter(OPENAI, 0)
    meter.observe(complete, count)
    return meter._data_lines


@given(st.one_of(reads, events))
def test_a_read_counted_as_events_is_sse_and_metered_the_same(complete: bytes) -> None:
    count = data_events(complete)
    if count >= 0:
        assert sse_prefix(complete) == len(complete)
        data_lines = [line for line in complete.split(b"\n") if line]
        assert count == len(data_lines)
        assert all(line.startswith(b"data:") for line in data_lines)
    assert metered(complete, count) == metered(complete, -1)


@given(events)
def test_plain_data_events_take_the_fast_path(complete: bytes) -> None:
    assert data_events(complete) == complete.count(b"\n\n")


def test_what_is_not_only_data_events_is_left_to_the_line_check() -> None:
    assert data_events(b"event: message_stop\n\n") == -1
    assert data_events(b"event: x\ndata: {}\n\n") == -1
    assert data_events(b"data: a\r\n\r\n") == -1
    assert data_events(b"data: a\n\ndata: b\n") == -1
    assert data_events(b"data: a\n\n<html>\n\n") == -1
    assert data_events(b"data: a\n\n") == 1
    assert data_events(b"data: a\n\ndata: [DONE]\n\n") == 2
