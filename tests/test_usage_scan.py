"""The usage scans that find lines by `find` (`markers.lines_holding`: the meter's and the
usage-only filter's) agree with the line-by-line loops they replaced, on any mix of lines
and line endings."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects import OPENAI, Usage, UsageMeter
from gateway.exact_usage import is_usage_only, without_usage_only
from gateway.markers import lines_holding

LINES = [
    b'data: {"choices":[{"delta":{"content":"the usage"}}]}',
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}',
    b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}',
    b": usage",
    b"",
    b"data: [DONE]",
    b'data: {"choices":[],"usage":nul',
]
ENDINGS = [b"\n", b"\r\n", b"\r"]


def reference_filter(complete: bytes, after_dropped: bool) -> tuple[bytes, bool]:
    """The loop `without_usage_only` was before (every line split and looked at)."""
    if b'"usage"' not in complete and not after_dropped:
        return complete, False
    kept: list[bytes] = []
    dropping = after_dropped
    for line in complete.splitlines(keepends=True):
        if dropping and not line.strip(b"\r\n"):
            dropping = False
            continue
        dropping = False
        if b'"usage"' in line and is_usage_only(line.rstrip(b"\r\n")):
            dropping = True
            continue
        kept.append(line)
    return b"".join(kept), dropping


def reference_usage(complete: bytes) -> Usage:
    usage = Usage()
    for line in complete.splitlines():
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                data = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict):
                OPENAI.update_usage(usage, data)
    return usage


reads = st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from(ENDINGS)), max_size=12).map(
    lambda parts: b"".join(line + end for line, end in parts))


@given(reads, st.booleans())
def test_the_filter_is_the_line_by_line_one(complete: bytes, after_dropped: bool) -> None:
    assert without_usage_only(complete, after_dropped) == reference_filter(complete, after_dropped)


@given(reads)
def test_the_meter_reads_the_same_usage(complete: bytes) -> None:
    meter = UsageMeter(OPENAI, 0)
    meter.observe(complete)
    expected = reference_usage(complete)
    assert (meter.usage.reported, meter.usage.prompt_tokens) == (expected.reported, expected.prompt_tokens)
    if expected.reported:
        assert meter.usage.completion_tokens == expected.completion_tokens


@given(reads)
def test_lines_holding_are_the_split_lines_that_hold_it(complete: bytes) -> None:
    found = [complete[start:end] for start, end in lines_holding(complete, b'"usage"')]
    assert found == [line for line in complete.splitlines() if b'"usage"' in line]
