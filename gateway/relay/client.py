"""Where a relayed stream goes: the `ClientStream` interface the relay writes to, and its one
implementation for an HTTP client (`HttpStream`, an aiohttp response). The relay knows nothing
else of the client, so a stream can be relayed into something else (a log) the same way.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from .sinks import Write


class ClientStream(Protocol):
    """`begin()` once before the first write (the head: an SSE response's headers; nothing
    when they went out already), `write(bytes)` for each read's lines and heartbeats,
    `finish()` at the end, `abort()` when the client stopped reading or reset."""

    @property
    def write(self) -> Write: ...

    async def begin(self) -> None: ...

    async def finish(self) -> None: ...

    def abort(self) -> None: ...


class HttpStream:
    """An SSE response to an HTTP client. `write` is the response's own bound method: the
    relay's hot path calls it directly, with nothing in between."""

    __slots__ = ("_request", "response", "write")

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self._request = request
        self.response = response
        self.write: Write = response.write

    async def begin(self) -> None:
        if not self.response.prepared:
            await self.response.prepare(self._request)

    async def finish(self) -> None:
        await self.response.write_eof()

    def abort(self) -> None:
        """A client that stopped reading (or reset) gets its connection aborted, not closed:
        a close would wait to flush a buffer it never reads, holding the socket on."""
        transport = self._request.transport
        if transport is not None:
            transport.abort()
