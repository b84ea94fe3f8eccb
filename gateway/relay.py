"""The relay loop: read what the upstream has, write its complete lines, flush, repeat.

Rules:
- Zero buffering: every read's complete lines go out in ONE write (which flushes to the
  socket) before the next read; only a partial last line waits for its end.
- Heartbeats: after `heartbeat` seconds with nothing written, `: ping` + a blank line,
  only at an event boundary (see `LineSplitter.at_boundary`), never mid-event.
- Timeouts: `idle` is the longest silence from the upstream, `deadline` the end of the
  whole stream, `first_byte` (loop times) when a stream handed over before its first byte
  must have sent it; each raises `UpstreamTimeout`, which the caller turns into one error
  event.
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
    first_byte: float = float("inf")  # loop.time() by which the first byte is due (first == b"")


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
    # Before the first byte, the upstream's silence is bounded by the first-byte deadline.
    idle_deadline = now + timing.idle if first else min(timing.first_byte, now + timing.idle)
    started = bool(first)  # any upstream body byte yet
    heartbeat_blocked = False  # due, but mid-event: wait for the upstream to reach a boundary
    alarm = _Alarm(loop)
    chunk = first
    try:
        while True:
            if chunk:
                started = True
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
            wake = idle_deadline if idle_deadline < timing.deadline else timing.deadline
            if timing.heartbeat and not heartbeat_blocked and last_write + timing.heartbeat < wake:
                wake = last_write + timing.heartbeat
            try:
                chunk = await alarm.wait(reader, wake)
            except TimeoutError:
                chunk = b""
                now = loop.time()
                if now >= timing.deadline:
                    raise UpstreamTimeout("the stream ran past total_timeout_seconds") from None
                if now >= idle_deadline:
                    if not started:
                        raise UpstreamTimeout("no first byte from the upstream in time") from None
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
    finally:
        alarm.close()


class _Alarm:
    """`wait(reader, wake)`: `reader.readany()`, or TimeoutError once loop time reaches `wake`.

    What `asyncio.timeout_at` around each read does, without its cost per read (a Timeout
    object, a timer pushed on the loop's heap and cancelled again): ONE timer per stream,
    re-armed lazily. `wake` moves later with every write; the timer keeps its earlier time,
    and when it rings early it sleeps on until the current `wake`. Only a wake that is really
    due cancels the pending read, and only while the relay waits in it (never mid-write);
    that cancel is ours to turn into TimeoutError, any other cancel (client gone) propagates.
    """

    __slots__ = ("_loop", "_task", "_cancelling", "_wake", "_at", "_handle", "_waiting", "_rang")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._loop = loop
        self._task = task
        self._cancelling = task.cancelling()
        self._wake = 0.0
        self._at = 0.0  # when `_handle` rings
        self._handle: asyncio.TimerHandle | None = None
        self._waiting = False
        self._rang = False

    async def wait(self, reader: aiohttp.StreamReader, wake: float) -> bytes:
        self._wake = wake
        if self._handle is None or wake < self._at:
            if self._handle is not None:
                self._handle.cancel()
            self._at = wake
            self._handle = self._loop.call_at(wake, self._ring)
        self._waiting = True
        try:
            return await reader.readany()
        except asyncio.CancelledError:
            if self._rang and self._task.uncancel() <= self._cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._waiting = False
            self._rang = False

    def _ring(self) -> None:
        self._handle = None
        if self._loop.time() < self._wake:  # the stream moved on since: sleep on
            self._at = self._wake
            self._handle = self._loop.call_at(self._wake, self._ring)
        elif self._waiting and not self._rang:
            self._rang = True
            self._task.cancel()
        # else: due while the relay writes; its next `wait` re-arms with a fresh `wake`

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


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
