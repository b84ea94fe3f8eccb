"""The first attempt's sink when a stream may be resumed: a malformed upstream event (not
JSON) never reaches the client; the events before it go out, then the stream fails (and may
be resumed from what the client has)."""

from __future__ import annotations

import orjson

from ..errors import GatewayError, UpstreamError
from .sinks import Sink

MALFORMED = "the upstream sent an event that is not JSON"


def first_malformed(complete: bytes) -> int | None:
    """Where the event holding the first `data:` line that is neither JSON nor `[DONE]`
    starts in `complete` (the offset after the blank line before it), or None."""
    start = offset = 0
    for line in complete.splitlines(keepends=True):
        body = line.rstrip(b"\r\n")
        if not body:
            start = offset + len(line)
        elif body.startswith(b"data:"):
            value = body[5:].strip()
            if value != b"[DONE]":
                try:
                    orjson.loads(value)
                except orjson.JSONDecodeError:
                    return start
        offset += len(line)
    return None


class Guarded(Sink):
    """The route's own sink for the first attempt, with a malformed event kept from the
    client: the events before it go out, then the stream fails (and may be resumed). An
    unterminated last line at EOF (a cut inside an event) is dropped: half an event is of
    no use to the client, and the continuation carries that text."""

    def __init__(self, inner: Sink) -> None:
        super().__init__(inner.write, inner.shape)
        self.inner = inner

    async def lines(self, complete: bytes) -> None:
        bad = first_malformed(complete)
        if bad is None:
            await self.inner.lines(complete)
            return
        if not complete.endswith(b"\n"):  # the flushed tail of a cut stream
            if bad:
                await self.inner.lines(complete[:bad])
            return
        if bad:
            await self.inner.lines(complete[:bad])
        raise UpstreamError(MALFORMED)

    def end(self) -> bytes:
        return self.inner.end()

    async def error(self, exc: GatewayError) -> None:
        await self.inner.error(exc)
