"""A subscriber: `retry:` once, the events after its last (each with its `id:`), then the live
tail as it is appended, with `: ping` heartbeats while it waits. Ends after `done` or `error`.

Zero buffering: whatever the log has when the subscriber wakes goes out in ONE write; each
event's stored bytes are written as they are, after its `id:` line.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from ..errors import ClientGone
from ..relay.early import sse_response
from ..relay.loop import HEARTBEAT
from .log import Reader, Unavailable

#: what a browser waits before it reconnects (ms): a cut stream comes back quickly
RETRY = b"retry: 1000\n\n"
#: the wait for more when heartbeats are off
IDLE_WAIT_SECONDS = 15.0


class _Stalled(Exception):
    """A write did not drain within its bound: the subscriber stopped reading."""


async def _write(response: web.StreamResponse, data: bytes | None, bound: float) -> None:
    """`data`, or the end of the body when None, within `bound` seconds."""
    try:
        async with asyncio.timeout(bound):
            await (response.write_eof() if data is None else response.write(data))
    except TimeoutError:
        raise _Stalled() from None


async def serve_events(request: web.Request, reader: Reader, after: int, id_prefix: str,
                       heartbeat: float, headers: dict[str, str], request_id: str,
                       on_heartbeat: object = None, *,
                       stall_seconds: float = 60.0) -> tuple[web.StreamResponse, int, bool]:
    """Events after sequence number `after`, with ids `<id_prefix><seq>`. Returns the response,
    the last sequence number sent, and whether the stream's end was sent. A write that does not
    drain within `stall_seconds` (a subscriber that stopped reading) drops the connection: it
    would otherwise hold its socket, the bytes in its buffer and the generation forever."""
    response = sse_response(request_id, headers)
    await response.prepare(request)
    await _write(response, RETRY, stall_seconds)
    prefix = b"id: " + id_prefix.encode()
    wait = heartbeat or IDLE_WAIT_SECONDS
    seq = after
    try:
        while True:
            try:
                batch = await reader.read(seq, wait)
            except Unavailable as exc:
                data = orjson.dumps({"code": 503, "message": str(exc)})
                await _write(response, b"event: error\ndata: " + data + b"\n\n", stall_seconds)
                await _write(response, None, stall_seconds)
                return response, seq, False
            events = batch.events
            if events:
                first = batch.first
                await _write(response, b"".join(
                    [prefix + str(first + i).encode() + b"\n" + event for i, event in enumerate(events)]),
                    stall_seconds)
                seq = first + len(events) - 1
            elif not batch.ended and heartbeat:
                await _write(response, HEARTBEAT, stall_seconds)
                if callable(on_heartbeat):
                    on_heartbeat()
            if batch.ended:
                await _write(response, None, stall_seconds)
                return response, seq, True
    except (ConnectionResetError, ClientGone):
        return response, seq, False
    except _Stalled:
        if request.transport is not None:
            request.transport.abort()
        return response, seq, False
