"""`relay_lines` and its `Alarm`, driven directly: a fake upstream reader fed by the test, a sink
that records each write. Short timers end the waits (each bounded); nothing asserts on time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gateway.dialects.base import UsageMeter
from gateway.dialects.openai import OPENAI
from gateway.errors import ClientGone, UpstreamError, UpstreamTimeout
from gateway.relay.loop import HEARTBEAT, Alarm, Stopped, relay_lines
from gateway.relay.sinks import Sink
from gateway.relay.timing import RelayClock
from gateway.shapes import SIMPLE_SHAPE
from gateway.sse import LineSplitter
from tests._proc import eventually


async def wait_read(alarm: Alarm, reader: aiohttp.StreamReader, wake: float) -> bytes:
    """One read of the relay's hot path as `relay_lines` runs it inline: `waiting`, the read,
    a cancel that was the alarm's own is a timeout, then `waited`."""
    alarm.waiting(wake)
    try:
        return await reader.readany()
    except asyncio.CancelledError:
        if alarm.rang_for_wait():
            raise TimeoutError from None
        raise
    finally:
        alarm.waited()


class Reader:
    """What the relay uses of `aiohttp.StreamReader`: `readany()`; b"" is EOF."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.reading = asyncio.Event()  # set while a readany() waits

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.queue.put_nowait(chunk)

    def fail(self, exc: BaseException) -> None:
        self.queue.put_nowait(exc)

    async def readany(self) -> bytes:
        self.reading.set()
        try:
            item = await self.queue.get()
        finally:
            self.reading.clear()
        if isinstance(item, BaseException):
            raise item
        return item


class Recorder(Sink):
    """Records what the relay hands over; heartbeats land in the same list as HEARTBEAT."""

    def __init__(self, block: asyncio.Future[None] | None = None) -> None:
        super().__init__(self._write, SIMPLE_SHAPE)
        self.writes: list[bytes] = []
        self.block = block  # a write that never completes: a client that stopped reading

    async def _write(self, data: bytes) -> None:
        self.writes.append(data)

    async def lines(self, complete: bytes) -> None:
        if self.block is not None:
            await self.block
        self.writes.append(complete)


async def relay(reader: Reader, sink: Recorder, *, first: bytes = b"", heartbeat: float = 0,
                idle: float = 10, total: float = 30, alarm_out: list[Alarm] | None = None) -> float | None:
    """`relay_lines` as the stream driver calls it, with times relative to now."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    alarm = Alarm(loop, now + total)
    if alarm_out is not None:
        alarm_out.append(alarm)
    clock = RelayClock(heartbeat=heartbeat, idle=idle, deadline=now + total, now=now)

    async def beat() -> None:
        await sink.write(HEARTBEAT)

    try:
        reader_: Any = reader  # duck-typed: the relay only calls readany()
        return await relay_lines(reader_, sink, UsageMeter(OPENAI, 0), first, LineSplitter(), clock,
                                 beat, alarm)
    finally:
        alarm.close()


async def test_each_read_goes_out_as_one_write_of_its_complete_lines() -> None:
    reader, sink = Reader(), Recorder()
    reader.feed(b'data: {"a":1}\n\ndata: {"b"', b':2}\n\n', b"data: [DONE]\n\n", b"")
    forwarded = await asyncio.wait_for(relay(reader, sink, first=b": hi\n"), 5)
    assert sink.writes == [b": hi\n", b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"]
    assert forwarded is not None


async def test_a_last_line_without_its_end_is_never_forwarded_as_it_is() -> None:
    """(issue 22.3) At EOF a whole event line goes with its line end; half a line is a cut:
    dropped, so the error event that follows starts on a line of its own."""
    reader, sink = Reader(), Recorder()
    reader.feed(b"data: x\n\ndata: tail", b"")
    await asyncio.wait_for(relay(reader, sink), 5)
    assert sink.writes == [b"data: x\n\n"]
    reader, sink = Reader(), Recorder()
    reader.feed(b'data: x\n\ndata: {"choices":[{"del', b"")
    await asyncio.wait_for(relay(reader, sink), 5)
    assert sink.writes == [b"data: x\n\n"]
    reader, sink = Reader(), Recorder()
    reader.feed(b'data: x\n\ndata: {"a": 1}', b"")
    await asyncio.wait_for(relay(reader, sink), 5)
    assert sink.writes == [b"data: x\n\n", b'data: {"a": 1}\n\n']
    reader, sink = Reader(), Recorder()
    reader.feed(b"data: x\n\ndata: [DONE]", b"")
    await asyncio.wait_for(relay(reader, sink), 5)
    assert sink.writes == [b"data: x\n\n", b"data: [DONE]\n\n"]


async def test_eof_with_nothing_forwarded_returns_none() -> None:
    reader, sink = Reader(), Recorder()
    reader.feed(b"")
    assert await asyncio.wait_for(relay(reader, sink), 5) is None
    assert sink.writes == []


async def test_bytes_that_are_not_sse_end_the_stream_after_the_valid_lines() -> None:
    reader, sink = Reader(), Recorder()
    reader.feed(b"data: ok\n\n<html>oops</html>\n")
    with pytest.raises(UpstreamError, match="not server-sent events"):
        await asyncio.wait_for(relay(reader, sink), 5)
    assert sink.writes == [b"data: ok\n\n"]


async def test_a_lost_connection_is_an_upstream_error() -> None:
    reader, sink = Reader(), Recorder()
    reader.feed(b"data: ok\n\n")
    reader.fail(aiohttp.ClientPayloadError("cut"))
    with pytest.raises(UpstreamError, match="connection lost mid-stream"):
        await asyncio.wait_for(relay(reader, sink), 5)
    assert sink.writes == [b"data: ok\n\n"]


async def test_silence_past_idle_is_an_upstream_timeout() -> None:
    reader, sink = Reader(), Recorder()
    reader.feed(b"data: ok\n\n")
    with pytest.raises(UpstreamTimeout, match="went silent"):
        await asyncio.wait_for(relay(reader, sink, idle=0.05), 5)
    assert sink.writes == [b"data: ok\n\n"]


async def test_heartbeats_go_out_between_events_while_the_upstream_is_silent() -> None:
    reader, sink = Reader(), Recorder()
    reader.feed(b"data: one\n\n")
    task = asyncio.ensure_future(relay(reader, sink, heartbeat=0.01))
    await eventually(lambda: sink.writes.count(HEARTBEAT) >= 2, timeout=5, what="two heartbeats")
    reader.feed(b"data: two\n\n", b"")
    await asyncio.wait_for(task, 5)
    assert sink.writes[0] == b"data: one\n\n" and sink.writes[-1] == b"data: two\n\n"
    assert set(sink.writes[1:-1]) == {HEARTBEAT}


async def test_no_heartbeat_splits_an_event() -> None:
    # Mid-event the heartbeat (every 10 ms) is held back until idle (0.2 s) ends the stream.
    reader, sink = Reader(), Recorder()
    reader.feed(b"data: half an event\n")
    with pytest.raises(UpstreamTimeout, match="went silent"):
        await asyncio.wait_for(relay(reader, sink, heartbeat=0.01, idle=0.2), 5)
    assert sink.writes == [b"data: half an event\n"]


async def test_stop_ends_the_relay_at_its_wait_with_stopped() -> None:
    reader, sink = Reader(), Recorder()
    alarms: list[Alarm] = []
    reader.feed(b"data: one\n\n")
    task = asyncio.ensure_future(relay(reader, sink, alarm_out=alarms))
    await eventually(lambda: sink.writes and reader.reading.is_set(), timeout=5, what="relay waiting")
    alarms[0].stop("shutting down")
    with pytest.raises(Stopped, match="shutting down"):
        await asyncio.wait_for(task, 5)


async def test_a_write_blocked_past_the_deadline_is_cancelled_and_told_apart() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    reader, sink = Reader(), Recorder(block=never)
    alarms: list[Alarm] = []
    reader.feed(b"data: one\n\n")

    async def drive() -> bool:
        try:
            await relay(reader, sink, total=0.05, alarm_out=alarms)
        except asyncio.CancelledError:
            return alarms[0].write_cancelled()  # what stream_answer asks: ours, not the client's
        raise AssertionError("the blocked write was not cancelled")

    assert await asyncio.wait_for(drive(), 5) is True


# The Alarm on its own: each runs in its own task, as the alarm belongs to the task waiting.

async def in_task(body: Callable[[asyncio.AbstractEventLoop], Awaitable[object]]) -> object:
    return await asyncio.wait_for(asyncio.ensure_future(body(asyncio.get_running_loop())), 5)


async def test_alarm_rings_during_a_wait_as_timeout_error_and_leaves_the_task_uncancelled() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> int:
        alarm = Alarm(loop, loop.time() + 60)
        reader: Any = Reader()
        with pytest.raises(TimeoutError):
            await wait_read(alarm, reader, loop.time() + 0.01)
        alarm.close()
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert await in_task(body) == 0


async def test_alarm_returns_data_that_arrives_before_wake() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> bytes:
        alarm = Alarm(loop, loop.time() + 60)
        reader = Reader()
        # the first wait arms the one timer early; the second moves wake later: it sleeps on
        reader.feed(b"data: now\n\n")
        first = await wait_read(alarm, reader, loop.time() + 0.01)  # type: ignore[arg-type]
        loop.call_later(0.05, reader.feed, b"data: later\n\n")
        second = await wait_read(alarm, reader, loop.time() + 30)  # type: ignore[arg-type]
        alarm.close()
        return first + second

    assert await in_task(body) == b"data: now\n\ndata: later\n\n"


async def test_alarm_stop_during_a_wait_raises_stopped() -> None:
    holder: list[Alarm] = []
    reader = Reader()

    async def body(loop: asyncio.AbstractEventLoop) -> None:
        holder.append(Alarm(loop, loop.time() + 60))
        try:
            await wait_read(holder[0], reader, loop.time() + 60)  # type: ignore[arg-type]
        finally:
            holder[0].close()

    task = asyncio.ensure_future(body(asyncio.get_running_loop()))
    await eventually(reader.reading.is_set, timeout=5, what="the alarm waiting")
    holder[0].stop("draining")
    with pytest.raises(Stopped, match="draining"):
        await asyncio.wait_for(task, 5)


async def test_alarm_stopped_before_a_wait_raises_at_once() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        alarm = Alarm(loop, loop.time() + 60)
        alarm.stop("draining")
        await wait_read(alarm, Reader(), loop.time() + 60)  # type: ignore[arg-type]

    with pytest.raises(Stopped):
        await in_task(body)


async def test_a_cancel_that_is_not_the_alarms_propagates() -> None:
    reader = Reader()

    async def body(loop: asyncio.AbstractEventLoop) -> None:
        alarm = Alarm(loop, loop.time() + 60)
        try:
            await wait_read(alarm, reader, loop.time() + 60)  # type: ignore[arg-type]
        finally:
            alarm.close()

    task = asyncio.ensure_future(body(asyncio.get_running_loop()))
    await eventually(reader.reading.is_set, timeout=5, what="the alarm waiting")
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_bounded_write_blocked_past_the_deadline_is_client_gone() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        alarm = Alarm(loop, loop.time() + 0.05)
        never: asyncio.Future[None] = loop.create_future()
        try:
            await alarm.bounded(never)
        finally:
            alarm.close()

    with pytest.raises(ClientGone, match="stopped reading"):
        await in_task(body)


async def test_bounded_write_that_completes_returns() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> str:
        alarm = Alarm(loop, loop.time() + 60)
        done: asyncio.Future[None] = loop.create_future()
        loop.call_soon(done.set_result, None)
        await alarm.bounded(done)
        alarm.close()
        return "written"

    assert await in_task(body) == "written"
