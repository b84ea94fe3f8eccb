"""The SSE line splitter and event parser, fed whole, byte by byte and in random splits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import LineTooLong
from gateway.sse import EventParser, LineSplitter

STREAM = (
    b'data: {"a": 1}\n\n'
    b"event: content_block_delta\r\ndata: {\"b\": 2}\r\n\r\n"
    b": comment\r\rdata: x\r\r"
    b"data: line one\ndata: line two\n\n"
    b"\n"
    b"data: [DONE]\n\n"
)


def feed_all(splitter: LineSplitter, pieces: list[bytes]) -> tuple[bytes, list[bytes]]:
    outputs = [splitter.feed(piece) for piece in pieces]
    return b"".join(outputs) + splitter.flush(), outputs


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_whole_stream_passes_through_unchanged() -> None:
    splitter = LineSplitter()
    assert splitter.feed(STREAM) == STREAM
    assert splitter.flush() == b""


def test_byte_by_byte_output_equals_input_and_lines_leave_at_their_end() -> None:
    splitter = LineSplitter()
    out = bytearray()
    for i in range(len(STREAM)):
        byte = STREAM[i : i + 1]
        got = splitter.feed(byte)
        out += got
        # Every terminator byte releases its line at once; nothing else does.
        assert (got != b"") == (byte in (b"\n", b"\r"))
    assert bytes(out) == STREAM


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_every_split_position(cut: int) -> None:
    out, _ = feed_all(LineSplitter(), [STREAM[:cut], STREAM[cut:]])
    assert out == STREAM


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_random_splits_lose_and_invent_nothing(cuts: list[int]) -> None:
    out, _ = feed_all(LineSplitter(), split_at(STREAM, cuts))
    assert out == STREAM


def test_partial_line_is_held_until_its_end_arrives() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: hel") == b""
    assert splitter.held == 9
    assert splitter.feed(b"lo\ndata: wor") == b"data: hello\n"
    assert splitter.feed(b"ld\n\n") == b"data: world\n\n"


def test_one_byte_line_is_not_held_back() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: a\n") == b"data: a\n"
    assert splitter.feed(b"\n") == b"\n"


def test_cr_at_end_of_read_is_forwarded_at_once() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: a\r") == b"data: a\r"
    assert splitter.feed(b"\ndata: b\r\n") == b"\ndata: b\r\n"


def test_boundary_after_blank_line_only() -> None:
    splitter = LineSplitter()
    assert splitter.at_boundary  # stream start
    splitter.feed(b"event: x\n")
    assert not splitter.at_boundary  # mid-event
    splitter.feed(b"data: 1\n")
    assert not splitter.at_boundary
    splitter.feed(b"\n")
    assert splitter.at_boundary
    splitter.feed(b"data: 2")
    assert splitter.at_boundary  # a partial line held here: the client has none of it yet
    splitter.feed(b"\n")
    assert not splitter.at_boundary  # now the client has that line: mid-event


@pytest.mark.parametrize(
    ("pieces", "boundary"),
    [
        ([b"data: a\r", b"\n"], False),  # CRLF split: the LF ends no new (blank) line
        ([b"data: a\r", b"\n", b"\r\n"], True),
        ([b"data: a\r", b"\r"], True),  # CR CR: a blank line
        ([b"data: a\r\r", b"\n"], True),  # CR + CRLF: still one blank line
        ([b"data: a\r\n\r", b"\n"], True),
        ([b"data: a\n\r", b"\n"], True),
        ([b"data: a\r\n", b"\r"], True),
        ([b"data: a\r", b"\ndata: b\r", b"\n"], False),
    ],
)
def test_boundary_with_cr_endings_split_across_reads(pieces: list[bytes], boundary: bool) -> None:
    splitter = LineSplitter()
    for piece in pieces:
        splitter.feed(piece)
    assert splitter.at_boundary is boundary


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_boundary_matches_a_whole_parse_at_every_point(cuts: list[int]) -> None:
    splitter = LineSplitter()
    seen = b""
    for piece in split_at(STREAM, cuts):
        seen += splitter.feed(piece)
        assert splitter.at_boundary == _ends_at_boundary(seen, splitter.held)


def _ends_at_boundary(forwarded: bytes, held: int) -> bool:
    """What the client has (the forwarded bytes) ends with a blank line; `held` bytes are
    not the client's yet and do not matter."""
    lines = forwarded.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    # forwarded ends with a terminator: the last element is the empty rest.
    return len(lines) < 2 or lines[-2] == b""


def test_line_longer_than_the_limit_is_an_error() -> None:
    splitter = LineSplitter(max_line_bytes=16)
    splitter.feed(b"data: 0123456789")
    with pytest.raises(LineTooLong):
        splitter.feed(b"abcdef")


def test_flush_returns_an_unterminated_last_line() -> None:
    splitter = LineSplitter()
    splitter.feed(b"data: a\n\ndata: tail")
    assert splitter.flush() == b"data: tail"


def events(parser: EventParser, pieces: list[bytes]) -> list[tuple[str, str]]:
    return [(e.event, e.data) for piece in pieces for e in parser.feed(piece)]


EXPECTED_EVENTS = [
    ("message", '{"a": 1}'),
    ("content_block_delta", '{"b": 2}'),
    ("message", "x"),
    ("message", "line one\nline two"),
    ("message", "[DONE]"),
]


def test_event_parser_whole() -> None:
    assert events(EventParser(), [STREAM]) == EXPECTED_EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_event_parser_random_splits(cuts: list[int]) -> None:
    assert events(EventParser(), split_at(STREAM, cuts)) == EXPECTED_EVENTS


def test_event_parser_crlf_split_is_not_a_blank_line() -> None:
    assert events(EventParser(), [b"data: a\r", b"\ndata: b\r", b"\n\r\n"]) == [("message", "a\nb")]


def test_the_parser_knows_when_its_stream_is_between_events() -> None:
    parser = EventParser()
    assert parser.between_events  # nothing yet
    for piece, between in ((b"event: x\n", False), (b"data: 1\n", False), (b"\n", True),
                           (b"da", False), (b"ta: 2\r", False), (b"\n\r\n", True), (b": ping\n\n", True)):
        parser.feed(piece)
        assert parser.between_events is between, piece
