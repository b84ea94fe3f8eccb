"""A stream's end and error markers, found on SSE field lines only, with no I/O and no JSON
parsing on the hot path.

Rules:
- A marker is the start of a LINE (`data: [DONE]`, `event: message_stop`, `event: error`,
  `data: {"error"`): it counts only where a line starts (offset 0 of the complete lines in
  hand, or right after a CR or LF). Model text can't start a line: it travels inside JSON
  strings, which escape CR and LF, so `data: [DONE]` in the text is never the end.
- A whole-line marker (`event: message_stop`) must also end its line (`event: message_stops`
  is another event); a prefix marker (`data: {"error"`) need not.
- A finish (`"finish_reason":"…"`, `"stop_reason":"…"`) says the answer is complete even if
  its end marker never comes. Those are matched as substrings: a `"` inside a JSON string is
  always escaped (`\\"`), so `"finish_reason":"` can't be model text, and a null reason
  (`"finish_reason":null`, every chunk but the last) does not match.
- `feed` takes complete lines only (what `LineSplitter.feed` hands out). A partial last line
  left at EOF is `whole_last_line`'s to judge: a whole event missing its line end, or a cut.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

_CR, _LF = 13, 10

# `find`, not `in`: the hot path searches with `bytes.find(needle) >= 0`, never `needle in
# bytes`. CPython 3.11's `bytes in bytes` first tries the needle as an int and builds (then
# clears) a TypeError with its formatted message, about 2,000 instructions a test; on a read
# of one event that is more than the search itself. And `partition`, not `find`, for a needle
# that is nearly never there (an error event, the upstream's key): `complete.partition(needle)[1]`
# is the needle when found, else b"". It is a one-argument call, without `find`'s argument
# parsing (about 550 instructions less a test, callgrind); but when the needle IS there it
# copies the read on both sides of it, so a needle found in every stream (`[DONE]`, a finish)
# is searched with `find`.


class Marker(NamedTuple):
    prefix: bytes
    whole: bool = True  # the line must end right after the prefix


#: a stream's answer is complete (its end marker may still be missing): `"finish_reason":"…`
#: (OpenAI), `"stop_reason":"…` (Anthropic), with or without a space after the colon
FINISHES = (b'_reason":"', b'_reason": "')


def needle(marker: Marker) -> bytes:
    """The part of a marker past its field name (`[DONE]`, `message_stop`, `{"error"`): one
    substring search for it rules the marker out of most reads before any line is checked."""
    value = marker.prefix.partition(b":")[2].lstrip()
    return value.removeprefix(b'{"type":').lstrip().strip(b'"') or marker.prefix


def needles(markers: tuple[Marker, ...]) -> tuple[bytes, ...]:
    """The distinct `needle`s of `markers`, in order (`data: [DONE]` and `data:[DONE]`: one)."""
    return markers.needles if isinstance(markers, Markers) else tuple(dict.fromkeys(map(needle, markers)))


class Markers(tuple[Marker, ...]):
    """A dialect's end (or error) markers, a tuple that knows its `needles`: found once when
    the dialect is defined, not for every stream (nor held by every stream)."""

    needles: tuple[bytes, ...]

    def __new__(cls, *markers: Marker) -> Markers:
        self = super().__new__(cls, markers)
        self.needles = tuple(dict.fromkeys(map(needle, markers)))
        return self


def line_at(complete: bytes, marker: Marker) -> int:
    """Where the first line of `complete` that is `marker` starts, or -1."""
    prefix, size = marker.prefix, len(marker.prefix)
    at = complete.find(prefix)
    while at >= 0:
        if at == 0 or complete[at - 1] in (_CR, _LF):
            end = at + size
            if not marker.whole or end == len(complete) or complete[end] in (_CR, _LF):
                return at
        at = complete.find(prefix, at + 1)
    return -1


def has_line(complete: bytes, markers: tuple[Marker, ...]) -> bool:
    # A plain loop, not `any(generator)`: no generator object per read on the hot path.
    for marker in markers:
        if line_at(complete, marker) >= 0:
            return True
    return False


def lines_holding(complete: bytes, needle: bytes, at: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each line of `complete` that holds `needle`, its line ending left out
    (`complete[start:end]` is what `splitlines()` gives for it). Found by `find`, so a read of
    a hundred lines with one such line costs a few C calls, not a loop over the hundred.
    `at`: where `needle` is first found, when the caller searched for it already."""
    spans: list[tuple[int, int]] = []
    if at is None:
        at = complete.find(needle)
    while at >= 0:
        lf = complete.rfind(b"\n", 0, at)  # then a CR only between it and `at`: the line's
        start = max(lf, complete.rfind(b"\r", lf + 1, at)) + 1  # length, not the read's
        end = line_end(complete, at)
        spans.append((start, end))
        at = complete.find(needle, end)
    return spans


def line_end(complete: bytes, at: int) -> int:
    """Where the line holding offset `at` ends (its CR or LF, or the end of `complete`)."""
    lf = complete.find(b"\n", at)
    stop = len(complete) if lf < 0 else lf
    cr = complete.find(b"\r", at, stop)  # a CR only before the LF: the line's length again
    return stop if cr < 0 else cr


def after_line_end(complete: bytes, end: int) -> int:
    """Past the line ending at `end` (CRLF, CR or LF, as `splitlines` takes them)."""
    if complete.startswith(b"\r\n", end):
        return end + 2
    return min(end + 1, len(complete))


def has_finish(complete: bytes) -> bool:
    for finish in FINISHES:
        if complete.find(finish) >= 0:  # `find`, not `in`: see the top of this module
            return True
    return False


def whole_last_line(rest: bytes) -> bytes | None:
    """A last line that came without its line end at EOF: with its line ends (it also ends
    its event) when it is a whole event line (`data: [DONE]`, or a `data:` line whose value
    is whole JSON); None when it is a cut (half a line: never forwarded as it is)."""
    if not rest or not rest.startswith(b"data:"):
        return None
    value = rest[5:].strip()
    if value != b"[DONE]":
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return rest + b"\n\n"


class EndWatch:
    """What a stream's complete lines said so far: its end marker (`done`), the upstream's
    own error event (`failed`), a finish (`finished`). Once `done`, nothing more is searched.
    Each read costs one substring search per distinct `needle` (two or three), the line
    checks only when one is there."""

    __slots__ = ("ends", "errors", "finishes", "done", "failed", "finished", "_end_needles",
                 "_error_needles")

    def __init__(self, ends: tuple[Marker, ...], errors: tuple[Marker, ...], *,
                 finishes: bool = True) -> None:
        self.ends = ends
        self.errors = errors
        self.finishes = finishes  # this dialect has a finish before its end marker
        self.done = False
        self.failed = False
        self.finished = False
        self._end_needles = needles(ends)
        self._error_needles = needles(errors)

    def feed(self, complete: bytes) -> None:
        if self.done:
            return
        # The error event first: an error and the end marker in the same read is an error.
        # Loops written out here (not `has_finish`, not a helper): no call of ours per read.
        if not self.failed:  # nearly never there: `partition` (see the top of this module)
            for found in self._error_needles:
                if complete.partition(found)[1]:
                    self.failed = has_line(complete, self.errors)
                    break
        for found in self._end_needles:  # there once a stream: `find`
            if complete.find(found) >= 0:
                if has_line(complete, self.ends):
                    self.done = True
                    return
                break
        if self.finishes and not self.finished:
            for finish in FINISHES:
                if complete.find(finish) >= 0:
                    self.finished = True
                    return
