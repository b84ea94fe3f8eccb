"""Round two's hot-path shortcuts say exactly what the paths they replaced said: the
pass-through sink's marker watch (since issue 23.3: what a line-by-line parse says), the meter's data-line count (a property), the request ids."""

from __future__ import annotations

import asyncio
import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects import ANTHROPIC, OPENAI, UsageMeter
from gateway.markers import Marker
from gateway.middleware import RequestIds
from gateway.relay.sinks import PassThrough
from gateway.shapes import OPENAI_SHAPE

_PIECES = st.sampled_from([b"data: {}\n\n", b"data: [DONE]\n\n", b"data:[DONE]\n\n", b'data: {"error":1}\n\n',
                           b"event: message_stop\n", b": ping\n\n", b"\n", b"data: x", b"[DONE]", b"xdata:",
                           b"event: error\n", b'data: {"t": "data: [DONE] event: message_stop"}\n\n'])


def reference_data_lines(reads: list[bytes]) -> int:
    """Round one's count: four scans a read."""
    return sum(c.startswith(b"data:") + c.count(b"\ndata:") - c.startswith(b"data: [DONE]")
               - c.count(b"\ndata: [DONE]") for c in reads)


@given(st.lists(st.lists(_PIECES, max_size=6).map(b"".join), max_size=8))
def test_meter_counts_what_the_four_scan_count_did(reads: list[bytes]) -> None:
    meter = UsageMeter(OPENAI, prompt_estimate=3)
    for complete in reads:
        meter.observe(complete)
    assert meter.usage.completion_tokens == reference_data_lines(reads)


def reference_watch(reads: list[bytes], ends: tuple[Marker, ...], errors: tuple[Marker, ...]
                    ) -> tuple[bool, bool]:
    """(done, failed) after the reads, line by line (issue 23.3: a marker is a line that is,
    or for a prefix marker starts with, the marker; an error before or with the end counts)."""

    def seen(complete: bytes, markers: tuple[Marker, ...]) -> bool:
        return any(line == m.prefix or (not m.whole and line.startswith(m.prefix))
                   for line in complete.splitlines() for m in markers)

    done = failed = False
    for complete in reads:
        if not done:
            failed = failed or seen(complete, errors)
            done = seen(complete, ends)
    return done, failed


@given(st.lists(st.lists(_PIECES, max_size=6).map(b"".join), max_size=8),
       st.sampled_from([OPENAI, ANTHROPIC]))
def test_pass_through_watch_matches_the_line_by_line_watch(reads: list[bytes], dialect: object) -> None:
    ends, errors = dialect.end_markers, dialect.error_markers  # type: ignore[attr-defined]
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    sink = PassThrough(write, OPENAI_SHAPE, ends, errors)
    for complete in reads:
        asyncio.run(sink.lines(complete))
    assert written == reads
    assert (sink._watch.done, sink.failed) == reference_watch(reads, ends, errors)


def test_pass_through_stops_watching_once_the_end_is_seen() -> None:
    sink = PassThrough(lambda data: asyncio.sleep(0), OPENAI_SHAPE, OPENAI.end_markers, OPENAI.error_markers)
    sink.watch(b"data: [DONE]\n\n")
    sink.watch(b'data: {"error": {"message": "late"}}\n\n')  # after the end: not an error event
    assert (sink._watch.done, sink.failed, sink.passes) == (True, False, True)


def test_request_ids_are_32_hex_and_distinct_across_processes() -> None:
    first, second = RequestIds(), RequestIds()
    ids = [first.next() for _ in range(1000)] + [second.next() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 2000
    assert ids[0][:16] != ids[1000][:16]
    assert ids[1] == ids[0][:16] + f"{2:016x}"
