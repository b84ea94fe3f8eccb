"""The in-process event log: each stream's events in a list, subscribers woken by futures.

Bounded by `max_bytes` of events per stream; an ended stream is kept `keep_seconds`, then
forgotten (one timer per ended stream). This is also the local copy the Redis backend keeps
for the generation's own process, so local subscribers never wait on Redis.
"""

from __future__ import annotations

import asyncio
import time

from .log import Batch, EventLog, LogFull, Reader, StreamInfo, Writer, is_terminal

#: how long a generation may run at most, for `expires_at` while it does (it is refreshed at
#: the end); the upstream's own total timeout ends it sooner
LIVE_BOUND_SECONDS = 3600.0


class MemoryStream(Writer, Reader):
    __slots__ = ("stream_id", "tenant", "events", "size", "ended", "expires_at", "_log", "_waiters",
                 "_expiry")

    def __init__(self, log: MemoryLog, stream_id: str, tenant: str) -> None:
        self._log = log
        self.stream_id = stream_id
        self.tenant = tenant
        self.events: list[bytes] = []
        self.size = 0
        self.ended = False
        self.expires_at = time.time() + log.keep_seconds + LIVE_BOUND_SECONDS
        self._waiters: set[asyncio.Future[None]] = set()
        self._expiry: asyncio.TimerHandle | None = None

    # -- Writer --------------------------------------------------------------------------

    def append(self, event: bytes, *, over_bound: bool = False) -> int:
        if self.ended:
            raise RuntimeError("append to a stream that has ended")
        size = self.size + len(event)
        if size > self._log.max_bytes and not over_bound:
            raise LogFull(f"the stream's events reached max_bytes ({self._log.max_bytes}); it ends here")
        self.events.append(event)
        self.size = size
        if is_terminal(event):
            self._ended()
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()
        return len(self.events)

    def end(self, last: bytes) -> None:
        if not self.ended:
            self.append(last, over_bound=True)

    def _ended(self) -> None:
        self.ended = True
        log = self._log
        log.generating -= 1
        log.kept += 1
        self.expires_at = time.time() + log.keep_seconds
        self._expiry = asyncio.get_running_loop().call_later(log.keep_seconds, log.forget, self)

    # -- Reader --------------------------------------------------------------------------

    async def read(self, after: int, wait: float) -> Batch:
        """(A subscriber reads through its own `tail()`; this is for one-off reads.)"""
        return await _Tail(self).read(after, wait)

    def tail(self) -> _Tail:
        return _Tail(self)

    def info(self) -> StreamInfo:
        return StreamInfo(self.tenant, self.expires_at, local=True)

    def drop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


class MemoryLog(EventLog):
    """`generating` and `kept` count the streams in each state (the gauge reads them)."""

    def __init__(self, *, keep_seconds: float, max_bytes: int) -> None:
        self.keep_seconds = keep_seconds
        self.max_bytes = max_bytes
        self.streams: dict[str, MemoryStream] = {}
        self.generating = 0
        self.kept = 0

    def create(self, stream_id: str, tenant: str) -> MemoryStream:
        if stream_id in self.streams:
            raise ValueError("stream id in use")
        stream = self.streams[stream_id] = MemoryStream(self, stream_id, tenant)
        self.generating += 1
        return stream

    async def info(self, stream_id: str) -> StreamInfo | None:
        stream = self.streams.get(stream_id)
        return None if stream is None else stream.info()

    def reader(self, stream_id: str) -> Reader | None:
        stream = self.streams.get(stream_id)
        return None if stream is None else _Tail(stream)

    def forget(self, stream: MemoryStream) -> None:
        """Its keep time is over: unknown from now on."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            self.kept -= 1

    async def close(self) -> None:
        for stream in self.streams.values():
            stream.drop()
        self.streams.clear()
        self.generating = self.kept = 0


class _Tail(Reader):
    """One subscriber's reads of a stream: woken by `append`, or by its heartbeat timer. ONE
    timer per subscriber, re-armed lazily (a timer per wait would be one per event): a wait
    moves the deadline later; the timer, ringing early, sleeps on until it."""

    __slots__ = ("_stream", "_waiter", "_deadline", "_timer")

    def __init__(self, stream: MemoryStream) -> None:
        self._stream = stream
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def read(self, after: int, wait: float) -> Batch:
        stream = self._stream
        events = stream.events
        if len(events) > after or stream.ended:
            return Batch(after + 1, events[after:], stream.ended)
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._deadline = loop.time() + wait
        timer = self._timer
        if timer is None or timer.when() > self._deadline:  # none, or one that rings too late
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(self._deadline, self._ring)
        stream._waiters.add(waiter)
        try:
            await waiter
        finally:
            stream._waiters.discard(waiter)
            self._waiter = None
        return Batch(after + 1, events[after:], stream.ended)

    def _ring(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait arms it again
        loop = waiter.get_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._ring)
        else:
            waiter.set_result(None)
