"""The mock's SSE writer: a shape's stream steps out on the socket, with the stream faults applied
(delay, pace, fragments, line endings, garbage, silences, drops, a missing end marker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiohttp import web

from .faults import Faults
from .shapes import Event, Step, fragments, frame
from .state import StreamRecord


async def write_stream(
    request: web.Request,
    steps: Iterable[Step],
    faults: Faults,
    record: StreamRecord,
    delay: float,
    tps: float,
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})

    async def send(event: Event) -> None:
        data = frame(event, faults.newline, faults.multiline)
        for piece in fragments(data) if faults.fragment else (data,):
            await resp.write(piece)
            await request.writer.drain()
            if faults.fragment:
                await asyncio.sleep(0)  # let the peer read each piece on its own
        record.sent_at.append(time.monotonic())
        record.chunks_sent += 1

    async def at(k: int) -> bool:
        """Faults due after k content chunks; False when the connection was dropped."""
        if faults.silence is not None and faults.silence[1] == k:
            await asyncio.sleep(faults.silence[0])
        if faults.garbage == k:
            await send((None, b"}{garbage"))
        if faults.drop == k and request.transport is not None:
            request.transport.abort()
            return False
        return True

    try:
        if faults.hang:
            await asyncio.Future()  # no headers, until the client goes away
        await resp.prepare(request)  # sends the headers at once
        if request.transport is not None:
            # Any byte the kernel did not take pauses the writer, so drain() returns only
            # once the event is really on the socket.
            request.transport.set_write_buffer_limits(high=0)
        if delay:
            await asyncio.sleep(delay)
        # Faults for K run once: before content chunk K, or before the first other step
        # after it (the tail), and at the latest before the end marker.
        k, checked = 0, -1
        for event, kind in steps:
            if checked < k and (kind == "content" or k > 0 or kind == "end"):
                checked = k
                if not await at(k):
                    return resp
            if kind == "end" and faults.noend:
                continue
            if kind == "content" and k and tps:
                await asyncio.sleep(1 / tps)
            await send(event)
            k += kind == "content"
        await resp.write_eof()
        record.completed = True
    except ConnectionResetError:  # the peer went away mid-write
        record.client_closed = True
    return resp
