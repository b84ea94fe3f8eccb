"""The relay loop: read what the upstream has, write its complete lines, flush, repeat.

Rules:
- Zero buffering: every read's complete lines go out in ONE write (which flushes to the
  socket) before the next read; only a partial last line waits for its end.
- Heartbeats: after `heartbeat` seconds with nothing written, `: ping` + a blank line,
  only at an event boundary (see `LineSplitter.at_boundary`), never mid-event.
- Timeouts: `idle` is the longest silence from the upstream, `deadline` the end of the
  whole stream (loop time); either raises `UpstreamTimeout`, which the caller turns into
  one error event.
- The caller owns the upstream response: on any exit it closes it (cancel included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from .dialects import UsageMeter
from .errors import UpstreamError, UpstreamTimeout
from .sse import LineSplitter

HEARTBEAT = b": ping\n\n"

#: What an upstream SSE line may start with (WHATWG field names, comments, blank lines).
_SSE_FIELDS = (b"data:", b"data", b"event:", b"event", b"id:", b"id", b"retry:", b":")


@dataclass(slots=True)
class RelayTiming:
    heartbeat: float  # 0 = off
    idle: float
    deadline: float  # loop.time() at which the stream must end


async def relay_lines(
    reader: aiohttp.StreamReader,
    write: Callable[[bytes], Awaitable[None]],
    first: bytes,
    splitter: LineSplitter,
    meter: UsageMeter,
    timing: RelayTiming,
    heartbeat: Callable[[], Awaitable[None]],
) -> None:
    loop = asyncio.get_running_loop()
    now = loop.time()
    last_write = now
    idle_deadline = now + timing.idle
    heartbeat_blocked = False  # due, but mid-event: wait for the upstream to reach a boundary
    chunk = first
    while True:
        if chunk:
            complete = splitter.feed(chunk)
            if complete:
                valid = _sse_prefix(complete)
                if valid < len(complete):
                    if valid:
                        await write(complete[:valid])
                    raise UpstreamError("the upstream sent bytes that are not server-sent events")
                meter.observe(complete)
                await write(complete)
                last_write = loop.time()
                heartbeat_blocked = False
                idle_deadline = last_write + timing.idle
            else:
                idle_deadline = loop.time() + timing.idle
        wake = min(idle_deadline, timing.deadline)
        if timing.heartbeat and not heartbeat_blocked:
            wake = min(wake, last_write + timing.heartbeat)
        try:
            async with asyncio.timeout_at(wake):
                chunk = await reader.readany()
        except TimeoutError:
            chunk = b""
            now = loop.time()
            if now >= timing.deadline:
                raise UpstreamTimeout("the stream ran past total_timeout_seconds") from None
            if now >= idle_deadline:
                raise UpstreamTimeout("the upstream went silent past idle_timeout_seconds") from None
            if splitter.at_boundary:
                await heartbeat()
                last_write = loop.time()
            else:
                heartbeat_blocked = True
            continue
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream connection lost mid-stream ({type(exc).__name__})") from None
        if not chunk:  # EOF: hand over a last line that had no ending, nothing is lost
            rest = splitter.flush()
            if rest:
                await write(rest)
            return


def _sse_prefix(complete: bytes) -> int:
    """How many leading bytes of `complete` are SSE lines; less than all when the upstream
    sends something else (an HTML error page, binary noise) mid-stream."""
    offset = 0
    for line in complete.splitlines(keepends=True):
        if line.startswith(_SSE_FIELDS) or not line.strip(b"\r\n"):
            offset += len(line)
        else:
            return offset
    return offset
