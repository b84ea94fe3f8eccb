"""The usage-only filter takes where the meter found `"usage"` in the same read instead of
searching again (`HiddenUsage.usage_meter`): what it forwards is exactly what it forwards
searching itself, whatever the reads and their splits, a masked key included."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects import OPENAI, UsageMeter
from gateway.relay.hidden_usage import HiddenUsage
from gateway.shapes import OPENAI_SHAPE
from gateway.sse import LineSplitter
from gateway.upstream.mask import StreamMask

LINES = [
    b'data: {"choices":[{"delta":{"content":"the usage"}}]}',
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}',
    b'data: {"choices":[{"delta":{"content":"key sk-upstream-secret-key-0123"}}]}',
    b'data: {"choices":[],"usage":nul',
    b": usage",
    b"",
    b"data: [DONE]",
]
ENDINGS = [b"\n", b"\n", b"\r\n", b"\r"]

streams = st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from(ENDINGS)), max_size=16).map(
    lambda parts: b"".join(line + end for line, end in parts))


async def _write(data: bytes) -> None:
    return None


def forwarded(stream: bytes, cuts: list[int], hinted: bool) -> list[bytes]:
    splitter, meter = LineSplitter(), UsageMeter(OPENAI, 0)
    sink = HiddenUsage(_write, OPENAI_SHAPE, OPENAI.end_markers, OPENAI.error_markers, OPENAI.end_bytes)
    sink.mask = StreamMask(["sk-upstream-secret-key-0123"])
    if hinted:
        sink.usage_meter = meter
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        complete = splitter.feed(stream[start:end])
        if complete:
            meter.observe(complete)
            out.append(sink.watch(complete))
    return out


@given(streams, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_the_hint_changes_nothing_forwarded(stream: bytes, cuts: list[int]) -> None:
    cuts = sorted({min(cut, len(stream)) for cut in cuts})
    assert forwarded(stream, cuts, hinted=True) == forwarded(stream, cuts, hinted=False)


def test_the_usage_only_chunk_is_taken_out_with_the_hint() -> None:
    stream = LINES[0] + b"\n\n" + LINES[1] + b"\n\n" + b"data: [DONE]\n\n"
    assert b"".join(forwarded(stream, [], hinted=True)) == LINES[0] + b"\n\ndata: [DONE]\n\n"
