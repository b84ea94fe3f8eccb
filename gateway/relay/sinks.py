"""Where the relay's complete upstream lines go: to the client as they are, or mapped.

A sink writes one read's worth of lines in ONE write (zero buffering), knows whether the
upstream reached its dialect's end marker (a stream without it is truncated, never a
success), and writes the one error event of its route's shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..codecs import AnthropicToChat, StreamCodec
from ..codecs.anthropic_to_responses import AnthropicToResponses
from ..codecs.common import NOT_JSON
from ..errors import GatewayError, UpstreamError
from ..shapes import ANTHROPIC_TYPES, OPENAI_TYPES, ErrorShape
from ..sse import EventParser

Write = Callable[[bytes], Awaitable[None]]


class Sink:
    """`lines(complete)` for each read, then `end()` at a clean EOF (raises when the answer
    is truncated), or `error(exc)` once when the stream fails."""

    #: True when `lines(complete)` is exactly `watch(complete)` then `write(complete)`: the
    #: relay then does those two itself (one coroutine less per read on the hot path).
    passes = False

    def __init__(self, write: Write, shape: ErrorShape) -> None:
        self.write = write
        self.shape = shape
        self.failed = False

    async def lines(self, complete: bytes) -> None:
        raise NotImplementedError

    def watch(self, complete: bytes) -> None:
        """What a `passes` sink notes about bytes it forwards unchanged."""

    def end(self) -> None:
        """The upstream ended: raise `UpstreamError` unless the answer is complete."""

    async def error(self, exc: GatewayError) -> None:
        if not self.failed:
            self.failed = True
            await self.write(self.shape.event(exc))


TRUNCATED = "the upstream ended the stream before the answer was complete"


class PassThrough(Sink):
    """The upstream's bytes as they are; watches for the end marker with a substring search
    (`data: [DONE]`, `event: message_stop`, a final `response.*` event), and for the
    upstream's own error event, which then IS the stream's one error event. Once the end
    marker is seen nothing more is searched."""

    passes = True

    def __init__(self, write: Write, shape: ErrorShape, ends: tuple[bytes, ...],
                 errors: tuple[bytes, ...]) -> None:
        super().__init__(write, shape)
        self._ends = ends
        self._errors = errors
        self._done = False

    async def lines(self, complete: bytes) -> None:
        self.watch(complete)
        await self.write(complete)

    def watch(self, complete: bytes) -> None:
        # Plain loops, not `any(generator)`: no generator object per read.
        if self._done:
            return
        for marker in self._ends:
            if marker in complete:
                self._done = True
                return
        for marker in self._errors:
            if marker in complete:
                self.failed = True  # the client has the upstream's error event already
                return

    def end(self) -> None:
        if self.failed:
            raise UpstreamError("the upstream sent an error event mid-stream")
        if not self._done:
            raise UpstreamError(TRUNCATED)


class Translating(Sink):
    """Upstream events through a codec (`gateway.codecs`): each read's complete events are
    parsed, each fed to the codec, and what the codec says for them goes out in ONE write,
    before the next read (zero buffering holds: no event waits for a later one).

    The codec writes the upstream's own error event (or a not-JSON event) in the client's
    dialect; the stream then fails at once with nothing after it. A gateway-detected failure
    (truncation, timeout) is the codec's `error_event`, in the client's dialect too."""

    def __init__(self, write: Write, shape: ErrorShape, codec: StreamCodec, max_line_bytes: int) -> None:
        super().__init__(write, shape)
        self.codec = codec
        self._parser = EventParser(max_line_bytes)

    async def lines(self, complete: bytes) -> None:
        out = b"".join(self.codec.feed(event.event, event.data) for event in self._parser.feed(complete))
        if out:
            await self.write(out)
        if self.codec.failure is not None:
            self.failed = True  # the client has the upstream's error event already
            failure = self.codec.failure
            raise UpstreamError(failure if failure == NOT_JSON else f"upstream error: {failure}")

    def end(self) -> None:
        if not self.codec.done:
            raise UpstreamError(TRUNCATED)

    async def error(self, exc: GatewayError) -> None:
        if self.failed or self.codec.done:
            return
        self.failed = True
        if isinstance(self.codec, AnthropicToChat | AnthropicToResponses):
            kind = OPENAI_TYPES.get(exc.kind, "server_error")
            await self.write(self.codec.error_event(exc.status, kind, exc.message, code=exc.code))
            return
        kind = ANTHROPIC_TYPES.get(exc.kind, "api_error") if self.shape.name == "anthropic" else exc.kind
        await self.write(self.codec.error_event(exc.status, kind, exc.message))
