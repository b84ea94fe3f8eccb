"""One stream, start to end: send the SSE headers, run the relay into a sink, end it with
exactly one error event when it fails, and return how it went as a value.

The upstream response is closed on every exit (cancel included), released only after a
clean end, so a client that goes away closes the upstream at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..dialects import Usage, UsageMeter
from ..errors import ClientGone, GatewayError
from ..sse import LineSplitter
from ..upstream import Opened
from .loop import HEARTBEAT, Alarm, Stopped, relay_lines
from .sinks import Sink, Write
from .timing import RelayClock

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


@dataclass(frozen=True, slots=True)
class StreamSettings:
    heartbeat: float
    max_line_bytes: int


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    usage: Usage
    ttfb: float | None  # seconds from the request's arrival to its first byte written
    status: int  # 200, or 499 when the client went away
    outcome: str  # "ok", or the failing error's outcome
    error: str | None = None


async def stream_answer(
    request: web.Request, opened: Opened, make_sink: Callable[[Write], Sink], meter: UsageMeter,
    *, headers: dict[str, str], settings: StreamSettings, started: float,
    alarms: set[Alarm], on_heartbeat: Callable[[], None],
) -> tuple[web.StreamResponse, RelayOutcome]:
    """`meter` counts the usage from the upstream's lines as they pass; `started` is the
    request's arrival (perf_counter); `alarms` is where drain finds the stream to stop it."""
    loop = asyncio.get_running_loop()
    upstream = opened.upstream
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    alarm = Alarm(loop, opened.deadline)
    ttfb: float | None = None
    outcome, error, status = "ok", None, 200

    async def heartbeat() -> None:
        await response.write(HEARTBEAT)
        on_heartbeat()

    sink = make_sink(response.write)
    clock = RelayClock(
        heartbeat=settings.heartbeat, idle=upstream.idle_timeout_seconds, deadline=alarm.deadline,
        now=loop.time(), first_byte=opened.first_byte_deadline, started=bool(opened.first))
    clean = False
    alarms.add(alarm)
    try:
        try:
            await alarm.bounded(response.prepare(request))
            if not opened.first:  # handed over before its first byte: the client has waited
                await alarm.bounded(heartbeat())
            forwarded = await relay_lines(
                opened.response.content, sink, meter, opened.first,
                LineSplitter(settings.max_line_bytes), clock, heartbeat, alarm)
            if forwarded is not None:
                ttfb = forwarded - started
            sink.end()
            clean = True
        except ClientGone:
            raise
        except GatewayError as exc:
            outcome, error = exc.outcome, exc.message
            if isinstance(exc, Stopped):
                outcome = "shed"
            await alarm.bounded(sink.error(exc))
        await alarm.bounded(response.write_eof())
    except (ConnectionResetError, ClientGone) as exc:
        outcome, status = "client_disconnected", 499
        error = exc.message if isinstance(exc, ClientGone) else None
    except asyncio.CancelledError:
        if not alarm.write_cancelled():
            raise  # the client went away: the handler is cancelled
        outcome, status = "client_disconnected", 499
        error = "the client stopped reading; the stream's deadline passed"
    finally:
        alarms.discard(alarm)
        alarm.close()
        if clean:
            opened.response.release()
        else:
            opened.response.close()
    return response, RelayOutcome(meter.usage, ttfb, status, outcome, error)
