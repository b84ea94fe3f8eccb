"""Server-Sent Events, without I/O: the incremental line splitter the relay forwards with,
and the event parser the simple-event route reads with.

Rules (WHATWG HTML, "event stream interpretation"):
- A line ends at CRLF, LF or CR. A CRLF may be split across two reads: a CR that
  ends one read and an LF that starts the next are ONE line ending, not two.
- A blank line ends (dispatches) an event; a line starting with ':' is a comment.
- Bytes are forwarded exactly as received; the splitter only decides how far the
  complete lines reach. Only a partial last line is held until its end arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LineTooLong

_CR = 13
_LF = 10


class LineSplitter:
    """`feed(bytes) -> bytes`: everything up to the end of the last complete line in hand.

    `at_boundary` is True when the last complete line handed out was blank (or nothing was
    handed out yet): what the client has is whole events, so a comment + blank line can be
    written without splitting or ending one early. A partial line held here does not
    matter: the client has none of it yet, and it follows the comment once complete.
    """

    __slots__ = ("_partial", "_after_cr", "_last_blank", "max_line_bytes")

    def __init__(self, max_line_bytes: int = 4_194_304) -> None:
        self._partial = b""
        self._after_cr = False  # the last byte handed out was a CR (an LF may complete it)
        self._last_blank = True  # stream start counts as a boundary
        self.max_line_bytes = max_line_bytes

    @property
    def at_boundary(self) -> bool:
        return self._last_blank

    @property
    def held(self) -> int:
        return len(self._partial)

    def feed(self, data: bytes) -> bytes:
        size = len(data)
        # What most reads are: whole events ending in "\n\n", nothing held. Then all of it is
        # complete and its last line is blank; two index tests, no scan (`_track_last_line`
        # would find the same: an LF ends it, not after a CR, and the line before is empty).
        if size > 1 and data[size - 1] == _LF and data[size - 2] == _LF and not self._partial:
            self._after_cr = False
            self._last_blank = True
            return data
        if not data:
            return b""
        last = data[size - 1]
        if last == _LF or last == _CR:  # the last line ends here: no other search needed
            end = size
        else:
            end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if end == 0:
            self._partial += data
            if len(self._partial) > self.max_line_bytes:
                raise LineTooLong(f"upstream line longer than {self.max_line_bytes} bytes")
            return b""
        complete = self._partial + data[:end] if self._partial else data[:end]
        self._partial = data[end:]
        if len(self._partial) > self.max_line_bytes:
            raise LineTooLong(f"upstream line longer than {self.max_line_bytes} bytes")
        self._track_last_line(complete)
        return complete

    def lines(self, data: bytes) -> list[bytes]:
        """`feed`, cut into lines without their endings (an LF that completes the previous
        read's CR is not a line of its own)."""
        lead_lf = self._after_cr and not self._partial
        complete = self.feed(data)
        if lead_lf and complete[:1] == b"\n":
            complete = complete[1:]
        return complete.splitlines()

    def flush(self) -> bytes:
        """At end of stream: the held partial line, forwarded as is (nothing lost)."""
        rest, self._partial = self._partial, b""
        return rest

    def _track_last_line(self, complete: bytes) -> None:
        # Find where the last line's terminator starts, then look at the byte before it.
        last = len(complete) - 1
        if complete[last] == _LF:
            if last == 0 and self._after_cr:
                # The LF completes the previous read's CR: no new line ended here.
                self._after_cr = False
                return
            term = last - 1 if last > 0 and complete[last - 1] == _CR else last
        else:
            term = last
        self._after_cr = complete[last] == _CR
        if term == 0:
            # The line began where this chunk began. Blank unless a held partial was its start
            # (a held partial is included in `complete`, so term == 0 means an empty line).
            self._last_blank = True
        else:
            self._last_blank = complete[term - 1] in (_CR, _LF)


@dataclass(slots=True)
class Event:
    event: str  # "message" when the stream names none
    data: str


class EventParser:
    """`feed(bytes) -> [Event]`: dispatched events, for routes that must read the stream.

    Lines come from a `LineSplitter` (the one place that knows CR, LF and CRLF, split
    across reads or not); this class only applies the event rules to them.
    """

    __slots__ = ("_lines", "_event", "_data")

    def __init__(self, max_line_bytes: int = 4_194_304) -> None:
        self._lines = LineSplitter(max_line_bytes)
        self._event = ""
        self._data: list[str] = []

    @property
    def between_events(self) -> bool:
        """What was fed ends between two events: no line and no event is half-way (a comment
        and a blank line written now would split nothing and dispatch nothing)."""
        return self._lines.at_boundary and not self._lines.held

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for raw in self._lines.lines(data):
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = Event(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None


_ONE_EVENT = (b"data:", b"event:", b":")
#: What an upstream SSE line may start with (WHATWG field names, comments, blank lines).
_SSE_FIELDS = (b"data:", b"data", b"event:", b"event", b"id:", b"id", b"retry:", b":")


def data_events(complete: bytes) -> int:
    """How many `data:` events `complete` is when it is nothing else, -1 otherwise (then
    `lines_prefix` checks it line by line and the meter counts its lines itself).

    What most reads are, in a few C-level scans: one `data:` line and its blank line; or k
    `data:` events each ending in a blank line, with no CR: then every newline is one of k
    "\n\n" pairs (k-1 of them followed by `data:`), so every line is a `data:` line or blank."""
    end = complete.find(b"\n")
    if end == len(complete) - 2 and complete[end + 1] == 10:
        return 1 if complete.startswith(b"data:") else -1
    if complete.startswith(b"data:") and complete.endswith(b"\n\n") and complete.find(b"\r") < 0:
        events = complete.count(b"\n\ndata:") + 1
        if complete.count(b"\n") == 2 * events:
            return events
    return -1


def sse_prefix(complete: bytes) -> int:
    """How many leading bytes of `complete` are SSE lines; less than all when the upstream
    sends something else (an HTML error page, binary noise) mid-stream."""
    return len(complete) if data_events(complete) >= 0 else lines_prefix(complete)


def lines_prefix(complete: bytes) -> int:
    """`sse_prefix` for a read `data_events` did not take: one event of another field (an
    `event:` line, a comment) in one scan, else line by line."""
    end = complete.find(b"\n")
    if end == len(complete) - 2 and complete[end + 1] == 10 and complete.startswith(_ONE_EVENT):
        return len(complete)
    offset = 0
    for line in complete.splitlines(keepends=True):
        if line.startswith(_SSE_FIELDS) or not line.strip(b"\r\n"):
            offset += len(line)
        else:
            return offset
    return offset
