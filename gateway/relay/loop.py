"""The relay loop: read what the upstream has, write its complete lines, flush, repeat.

Rules:
- Zero buffering: every read's complete lines go out in ONE write (which flushes to the
  socket) before the next read; only a partial last line waits for its end.
- Heartbeats and timeouts follow `RelayClock` (see `timing.py`); each timeout raises
  `UpstreamTimeout`, which the caller turns into one error event.
- A write to a client that stopped reading is bounded too: it is cancelled at the stream's
  deadline (`ClientGone`), so a non-reading client can't hold a slot past it.
- `Alarm.stop(reason)` (drain) ends the loop at its next wait with `Stopped`.
- The caller owns the upstream response: on any exit it closes it (cancel included).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp

from ..dialects import UsageMeter
from ..errors import ClientGone, Shed, UpstreamError
from ..markers import whole_last_line
from ..sse import LineSplitter, data_events, lines_prefix
from .sinks import Sink
from .timing import Due, RelayClock

HEARTBEAT = b": ping\n\n"

class Stoppable(Protocol):
    """A stream drain can end (`Runtime.alarms`): a relay's `Alarm`, or an early commit."""

    def stop(self, reason: str) -> None: ...


class Stopped(Shed):
    """The gateway stopped the stream (drain ran out of time)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="draining", retry_after=5)


class FirstForward:
    """When (perf_counter) lines first reached the client's sink: a stream's first byte, kept
    for a stream that fails after it (`relay_lines` then raises instead of returning it)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None


async def relay_lines(
    reader: aiohttp.StreamReader,
    sink: Sink,
    meter: UsageMeter,
    first: bytes,
    splitter: LineSplitter,
    clock: RelayClock,
    heartbeat: Callable[[], Awaitable[None]],
    alarm: Alarm,
    seen: FirstForward | None = None,
) -> float | None:
    """Forward until the upstream's EOF: each read's complete lines (checked to be SSE) are
    metered and handed to the sink. Returns when (perf_counter) lines first reached the sink;
    `seen` keeps that time for a caller the relay raises to (a stream that fails after it).

    The hot path: one `loop.time()`, one splitter feed, one SSE check (`data_events`, whose
    count the meter takes) and one sink call per read; writes are bounded by the alarm's flag
    (no wrapper coroutine per write)."""
    loop = alarm.loop
    passes, write = sink.passes, sink.write
    chunk = first
    forwarded: float | None = None
    alarm.arm()
    while True:
        if chunk:
            complete = splitter.feed(chunk)
            if complete:
                events = data_events(complete)  # most reads: the SSE check and the meter's count
                if events < 0:  # not only `data:` events: checked line by line
                    valid = lines_prefix(complete)
                    if valid < len(complete):
                        if valid:
                            await alarm.bounded(sink.lines(complete[:valid]))
                        raise UpstreamError("the upstream sent bytes that are not server-sent events")
                meter.observe(complete, events)
                alarm.writing = True
                try:
                    if passes:  # the response's own write, no sink coroutine in between
                        await write(sink.watch(complete))
                    else:
                        await sink.lines(complete)
                finally:
                    alarm.writing = False
                if forwarded is None:
                    forwarded = time.perf_counter()
                    if seen is not None and seen.at is None:
                        seen.at = forwarded
                wake = clock.forwarded(loop.time())  # `clock.wake()`, found on the way
            else:
                clock.bytes_arrived()
                wake = clock.wake()
        else:
            wake = clock.wake()
        # The wait is inline (`waiting`, the read, `waited`): no coroutine object per read
        # (CPU per chunk, and its frame is memory every idle stream holds).
        alarm.waiting(wake)
        try:
            chunk = await reader.readany()
        except asyncio.CancelledError:
            if not alarm.rang_for_wait():
                raise
            chunk = b""
            if clock.woke(loop.time(), splitter.at_boundary) is Due.HEARTBEAT:
                await alarm.bounded(heartbeat())
                clock.wrote(loop.time())
            continue
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream connection lost mid-stream ({type(exc).__name__})") from None
        finally:  # `alarm.waited()`, written out: no call of its own every read
            alarm._waiting = alarm._rang = False
        if not chunk:  # EOF
            # A last line without its ending is never forwarded as it is: a whole event line
            # goes with its line end; half a line is a cut, dropped (the sink's `end` then
            # finds the answer incomplete, and the error event starts on a line of its own).
            held = splitter.flush()
            rest = whole_last_line(held)
            if rest is not None:
                meter.observe(rest)
                await alarm.bounded(sink.lines(rest))
            elif held and not splitter.at_boundary:
                # The cut left an event open (`event: x` without its data): a blank line
                # ends it, dispatching nothing, so what follows is an event of its own.
                await alarm.bounded(sink.lines(b"\n"))
            return forwarded


class Alarm:
    """`wait(reader, wake)`: `reader.readany()`, or TimeoutError once loop time reaches `wake`
    (the relay inlines it: `waiting(wake)`, the read, `rang_for_wait()` on cancel, `waited()`).

    What `asyncio.timeout_at` around each read does, without its cost per read (a Timeout
    object, a timer pushed on the loop's heap and cancelled again): ONE timer per stream,
    re-armed lazily. `wake` moves later with every write; the timer keeps its earlier time,
    and when it rings early it sleeps on until the current `wake`. Only a wake that is really
    due cancels the pending read, and only while the relay waits in it (never mid-write);
    that cancel is ours to turn into TimeoutError, any other cancel (client gone) propagates.

    `stop(reason)` (drain) cancels a pending read the same way and makes it raise `Stopped`.
    `bounded(write)` runs a write to the client under the stream's `deadline` (the relay's hot
    path sets `writing` itself); a cancel that rang a blocked write is told apart by
    `write_cancelled()`, and the stream's driver turns it into `ClientGone`.
    """

    __slots__ = ("loop", "deadline", "_task", "_cancelling", "_wake", "_at", "_handle",
                 "_waiting", "writing", "_rang", "stopped")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.loop = loop
        self.deadline = deadline
        self._task = task
        self._cancelling = task.cancelling()
        self._wake = 0.0
        self._at = 0.0  # when `_handle` rings
        self._handle: asyncio.TimerHandle | None = None
        self._waiting = False
        self.writing = False  # a write to the client is under way (set by the relay)
        self._rang = False
        self.stopped: str | None = None

    def waiting(self, wake: float) -> None:
        """A read is about to be awaited: ring at `wake` (or `Stopped` now, if stopped)."""
        if self.stopped:
            raise Stopped(self.stopped)
        self._wake = wake
        if self._handle is None or wake < self._at:
            if self._handle is not None:
                self._handle.cancel()
            self._at = wake
            self._handle = self.loop.call_at(wake, self._ring)
        self._waiting = True

    def rang_for_wait(self) -> bool:
        """In the read's `except CancelledError`: was the cancel ours? True for a due wake
        (the caller treats it as a timeout), `Stopped` raised for a stop; False: someone
        else's cancel (the client gone), which the caller re-raises."""
        if self._rang and self._task.uncancel() <= self._cancelling:
            if self.stopped:
                raise Stopped(self.stopped) from None
            return True
        return False

    def waited(self) -> None:
        """The read is over (in its `finally`)."""
        self._waiting = False
        self._rang = False

    async def bounded(self, write: Awaitable[object]) -> None:
        """A write to the client, cancelled at the stream's deadline (a client that stopped
        reading fills its socket buffer and would otherwise block here for good). The same
        one timer does it: ringing mid-write, it re-arms at the deadline, or cancels there."""
        self.arm()
        self.writing = True
        try:
            await write
        except asyncio.CancelledError:
            if self.write_cancelled():
                raise ClientGone("the client stopped reading; the stream's deadline passed") from None
            raise
        finally:
            self.writing = False

    def write_cancelled(self) -> bool:
        """Was the task's cancel ours, ringing a blocked write at the deadline? (then the
        relay raises `ClientGone`; any other cancel, the client gone, propagates)"""
        if self._rang and not self._waiting and self._task.uncancel() <= self._cancelling:
            self._rang = False
            return True
        return False

    def arm(self) -> None:
        """A write is about to start outside a wait: make sure the deadline can ring."""
        if self._handle is None:
            self._at = self.deadline
            self._handle = self.loop.call_at(self.deadline, self._ring)

    def stop(self, reason: str) -> None:
        """End the relay at its next (or current) wait, with `Stopped(reason)`."""
        self.stopped = reason
        if self._waiting and not self._rang:
            self._rang = True
            self._task.cancel()

    def _ring(self) -> None:
        self._handle = None
        if self.loop.time() < self._wake:  # the stream moved on since: sleep on
            self._at = self._wake
            self._handle = self.loop.call_at(self._wake, self._ring)
        elif self._waiting and not self._rang:
            self._rang = True
            self._task.cancel()
        elif self.writing and not self._rang:  # a write is blocked: only the deadline ends it
            if self.loop.time() >= self.deadline:
                self._rang = True
                self._task.cancel()
            else:
                self._at = self.deadline
                self._handle = self.loop.call_at(self.deadline, self._ring)
        # else: due between waits; the next `wait` re-arms with a fresh `wake`

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
