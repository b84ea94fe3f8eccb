"""The relay's per-read fast paths against the slower code they stand for, over any reads:
`LineSplitter.feed`'s whole-events path, `EndWatch.feed`'s written-out searches, and the
pass-through sink's `end()` asking the last read (not each read) whether it ends an event."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects.anthropic import ANTHROPIC
from gateway.dialects.openai import OPENAI
from gateway.errors import UpstreamError
from gateway.markers import FINISHES, EndWatch, Marker, has_finish, has_line, needle
from gateway.relay.sinks import PassThrough
from gateway.shapes import OPENAI_SHAPE
from gateway.sse import LineSplitter

_CR, _LF = 13, 10


class ReferenceSplitter:
    """`LineSplitter` as it was before its fast paths (the `rfind`s on every read)."""

    def __init__(self) -> None:
        self.partial = b""
        self.after_cr = False
        self.last_blank = True

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if end == 0:
            self.partial += data
            return b""
        complete = self.partial + data[:end] if self.partial else data[:end]
        self.partial = data[end:]
        last = len(complete) - 1
        if complete[last] == _LF:
            if last == 0 and self.after_cr:
                self.after_cr = False
                return complete
            term = last - 1 if last > 0 and complete[last - 1] == _CR else last
        else:
            term = last
        self.after_cr = complete[last] == _CR
        self.last_blank = True if term == 0 else complete[term - 1] in (_CR, _LF)
        return complete


READS = st.lists(st.binary(max_size=12).map(lambda b: bytes(b"a\r\n:"[x % 4] for x in b))
                 | st.sampled_from([b"\n\n", b"data: x\n\n", b"\r", b"\n", b"a\n\n", b"\r\n\n"]),
                 max_size=20)


@given(READS)
def test_the_splitter_hands_out_what_the_reference_does(reads: list[bytes]) -> None:
    splitter, reference = LineSplitter(), ReferenceSplitter()
    for read in reads:
        assert splitter.feed(read) == reference.feed(read)
        assert (splitter.held, splitter.at_boundary, splitter._after_cr) == (
            len(reference.partial), reference.last_blank, reference.after_cr)


class ReferenceWatch:
    """`EndWatch.feed` as it was: a search per needle, then the line check."""

    def __init__(self, ends: tuple[Marker, ...], errors: tuple[Marker, ...]) -> None:
        self.ends, self.errors = ends, errors
        self.done = self.failed = self.finished = False

    def feed(self, complete: bytes) -> None:
        if self.done:
            return
        if (not self.failed and any(needle(m) in complete for m in self.errors)
                and has_line(complete, self.errors)):
            self.failed = True
        if any(needle(m) in complete for m in self.ends) and has_line(complete, self.ends):
            self.done = True
            return
        if not self.finished and has_finish(complete):
            self.finished = True


PIECES = [b"data: [DONE]\n\n", b'data: {"error": {}}\n\n', b'data: {"a":"[DONE]"}\n\n',
          b"event: message_stop\n", b"event: error\n", b'data: {"type":"error"}\n\n',
          b'data: {"finish_reason":"stop"}\n\n', b'data: {"stop_reason": "end"}\n\n',
          b'data: {"finish_reason":null}\n\n', b"data: x\r\n\r\n", b"\n", b"data:[DONE]\r",
          b'x data: {"error"\n', *FINISHES]


@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=4).map(b"".join), max_size=8),
       st.sampled_from([OPENAI, ANTHROPIC]))
def test_the_end_watch_sees_what_the_reference_does(reads: list[bytes], dialect: object) -> None:
    ends, errors = dialect.end_markers, dialect.error_markers  # type: ignore[attr-defined]
    watch, reference = EndWatch(ends, errors), ReferenceWatch(ends, errors)
    for read in reads:
        watch.feed(read)
        reference.feed(read)
        assert (watch.done, watch.failed, watch.finished) == (
            reference.done, reference.failed, reference.finished)


@given(st.lists(st.sampled_from([b'data: {"finish_reason":"stop"}\n\n', b'data: {"a":1}\n',
                                 b"\n", b'data: {"a":1}\n\n', b"event: x\r\n\r\n", b"x\r"]),
                min_size=1, max_size=6))
def test_the_end_bytes_depend_on_the_last_read_as_before(reads: list[bytes]) -> None:
    async def write(data: bytes) -> None: ...

    sink = PassThrough(write, OPENAI_SHAPE, OPENAI.end_markers, OPENAI.error_markers,
                       OPENAI.end_bytes)
    for read in reads:
        sink.watch(read)
    blank = reads[-1].endswith((b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r\n"))
    if any(has_finish(read) for read in reads):
        assert sink.end() == (OPENAI.end_bytes if blank else b"\n" + OPENAI.end_bytes)
    else:
        try:
            sink.end()
        except UpstreamError:
            pass
        else:
            raise AssertionError("a stream without a finish nor [DONE] is truncated")
