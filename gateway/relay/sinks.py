"""Where the relay's complete upstream lines go: to the client as they are, or mapped.

A sink writes one read's worth of lines in ONE write (zero buffering), knows whether the
upstream reached its dialect's end marker (a stream without it is truncated, never a
success, unless its answer was complete: then the gateway writes the end marker itself),
and writes the one error event of its route's shape. Markers are found on SSE field lines,
never inside the model's text (`gateway.markers`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..codecs import StreamCodec
from ..codecs.common import NOT_JSON
from ..dialects import UsageMeter
from ..errors import GatewayError, UpstreamError
from ..markers import EndWatch, Marker, has_finish
from ..shapes import ErrorShape
from ..sse import EventParser
from ..upstream.mask import NO_MASK, StreamMask

Write = Callable[[bytes], Awaitable[None]]


class Sink:
    """`lines(complete)` for each read, then `end()` at a clean EOF (raises when the answer
    is truncated), or `error(exc)` once when the stream fails."""

    #: True when `lines(complete)` is exactly `write(watch(complete))`: the relay then does
    #: that itself (one coroutine less per read on the hot path).
    passes = False

    # Slots: a sink lives as long as its stream, idle or not (a subclass without them gets a
    # dict as usual).
    __slots__ = ("write", "shape", "failed", "mask", "usage_meter")

    def __init__(self, write: Write, shape: ErrorShape) -> None:
        self.write = write
        self.shape = shape
        self.failed = False
        #: the upstream's key(s) out of everything this sink writes (set by the relay)
        self.mask: StreamMask = NO_MASK
        #: the stream's meter, which observes each read just before the sink sees it (set by
        #: the relay; a sink may take what it found instead of searching again)
        self.usage_meter: UsageMeter | None = None

    async def lines(self, complete: bytes) -> None:
        raise NotImplementedError

    def watch(self, complete: bytes) -> bytes:
        """What a `passes` sink notes about the bytes it forwards; returns them as they go
        out (the same object, unless a key of the upstream's had to be masked)."""
        return complete

    def numbered(self, last: int) -> None:
        """After a resume: the last `sequence_number` the client has (for a shape whose
        events are numbered, the error event comes after it)."""

    def end(self) -> bytes:
        """The upstream ended: raise `UpstreamError` unless the answer is complete. Returns
        what the gateway writes itself to end an answer that was complete without its end
        marker (then counted as `no_end_marker`), else b""."""
        return b""

    async def error(self, exc: GatewayError) -> None:
        if not self.failed:
            self.failed = True
            await self.write(self.shape.event(exc))


TRUNCATED = "the upstream ended the stream before the answer was complete"
_BLANK = (b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r\n")


class PassThrough(Sink):
    """The upstream's bytes as they are; watches for the end marker and for the upstream's
    own error event (which then IS the stream's one error event) on line starts only, and
    for a finish (`EndWatch`). Once the end marker is seen nothing more is searched.
    `end_bytes`: the end marker written after a complete answer that came without it (b"":
    this API has no finish before its end marker, a stream without it is truncated)."""

    passes = True

    __slots__ = ("_watch", "_end_bytes", "_last")

    def __init__(self, write: Write, shape: ErrorShape, ends: tuple[Marker, ...],
                 errors: tuple[Marker, ...], end_bytes: bytes = b"") -> None:
        super().__init__(write, shape)
        self._watch = EndWatch(ends, errors, finishes=bool(end_bytes))
        self._end_bytes = end_bytes
        #: the last read watched: whether the bytes forwarded so far end between two events is
        #: asked of it only at the end (`end`), not searched on every read
        self._last = b"\n\n"

    async def lines(self, complete: bytes) -> None:
        await self.write(self.watch(complete))

    def watch(self, complete: bytes) -> bytes:
        watch = self._watch
        if not watch.done:
            watch.feed(complete)
            self._last = complete
            if watch.failed:
                # The client gets the upstream's error event (and whatever follows it) with
                # every key-looking token masked: an upstream may echo the key it was sent.
                self.failed = True
                return self.mask.errors(complete)
        return self.mask.events(complete)

    def end(self) -> bytes:
        watch = self._watch
        if self.failed:
            raise UpstreamError("the upstream sent an error event mid-stream")
        if watch.done:
            return b""
        if watch.finished:  # a blank line first ends an event left open (it dispatches nothing)
            return self._end_bytes if self._last.endswith(_BLANK) else b"\n" + self._end_bytes
        raise UpstreamError(TRUNCATED)


class Translating(Sink):
    """Upstream events through a codec (`gateway.codecs`): each read's complete events are
    parsed, each fed to the codec, and what the codec says for them goes out in ONE write,
    before the next read (zero buffering holds: no event waits for a later one).

    The codec writes the upstream's own error event (or a not-JSON event) in the client's
    dialect; the stream then fails at once with nothing after it. A gateway-detected failure
    (truncation, timeout) is the codec's `error_event`, in the client's dialect too."""

    def __init__(self, write: Write, shape: ErrorShape, codec: StreamCodec, max_line_bytes: int,
                 end_event: tuple[str, str] | None = None) -> None:
        super().__init__(write, shape)
        self.codec = codec
        self._parser = EventParser(max_line_bytes)
        #: the upstream dialect's end event, fed to the codec after a complete answer that
        #: came without it (None: a stream without it is truncated)
        self._end_event = end_event
        self._finished = False

    async def lines(self, complete: bytes) -> None:
        if not self._finished and self._end_event is not None and has_finish(complete):
            self._finished = True
        out = b"".join(self.codec.feed(event.event, event.data) for event in self._parser.feed(complete))
        failure = self.codec.failure
        if out:  # an error event in the client's dialect quotes the upstream's message: masked
            await self.write(self.mask.events(out) if failure is None else self.mask.errors(out))
        if failure is not None:
            self.failed = True  # the client has the upstream's error event already
            raise UpstreamError(failure if failure == NOT_JSON
                                else f"upstream error: {self.mask.text(failure)}")

    def end(self) -> bytes:
        if self.codec.done:
            return b""
        if self._finished and self._end_event is not None:
            closing = self.codec.feed(*self._end_event)
            if self.codec.done and self.codec.failure is None:
                return closing
        raise UpstreamError(TRUNCATED)

    async def error(self, exc: GatewayError) -> None:
        if self.failed or self.codec.done:
            return
        self.failed = True
        await self.write(self.codec.gateway_error(exc))  # in the client's dialect: the codec's
