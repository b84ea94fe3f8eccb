"""One stream, start to end: send the SSE headers, run the relay into a sink, end it with
exactly one error event when it fails, and return how it went as a value (when the handler
is cancelled instead, the cancel carries it: `relayed(exc)`).

The upstream response is closed on every exit (cancel included), released only after a
clean end, so a client that goes away closes the upstream at once. With a `Resume`, a stream
cut after its first byte is continued on another upstream (see `resume.py`); when it can't
be, the one error event names the first cause, never the continuation's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ..dialects import Usage, UsageMeter
from ..errors import ClientGone, GatewayError, UpstreamError
from ..sse import LineSplitter
from ..upstream import Opened
from ..upstream.continuation import NoContinuation
from ..upstream.mask import StreamMask
from .client import ClientStream
from .early import EarlyCommit
from .guard import Guarded
from .loop import HEARTBEAT, Alarm, FirstForward, Stoppable, Stopped, relay_lines
from .resume import Resume, Splice
from .sinks import Sink, Write
from .timing import RelayClock


@dataclass(frozen=True, slots=True)
class StreamSettings:
    heartbeat: float
    max_line_bytes: int


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    usage: Usage
    #: seconds from the request's arrival to its first data line written (heartbeats are not
    #: data); None when none was, however the stream ended
    ttfb: float | None
    status: int  # 200, or 499 when the client went away
    result: str  # "ok", or the failing error's outcome (the log line's `outcome`)
    error: str | None = None
    #: each attempt that streamed (more than one after a mid-stream resume) and its own usage
    parts: tuple[tuple[Opened, Usage], ...] = ()
    #: the last part's verdict for its breaker (`UpstreamClient.ended`): a complete answer, or
    #: the provider's failure (cut, stall, malformed, truncated); neither: none (the client
    #: left, drain). Each earlier part's was given when it was cut (`Continuation.reopen`).
    complete: bool = False
    failure: str | None = None
    #: what the upstream that ended the stream got wrong although the answer is whole, for
    #: `gateway_upstream_errors_total{kind}`: "no_end_marker" (the gateway wrote it)
    anomaly: str | None = None


async def stream_answer(
    client: ClientStream, opened: Opened, make_sink: Callable[[Write], Sink], meter: UsageMeter,
    *, settings: StreamSettings, started: float,
    alarms: set[Stoppable], on_heartbeat: Callable[[], None], resume: Resume | None = None,
) -> RelayOutcome:
    """`meter` counts the usage from the upstream's lines as they pass; `started` is the
    request's arrival (perf_counter); `alarms` is where drain finds the stream to stop it.
    `client`: where the stream goes (`HttpStream`: an SSE response, maybe one whose headers
    and heartbeats went out while failover went on).

    Every ending returns its outcome, except a cancel (the client went away and the server
    cancelled the handler): the cancel must propagate, so it carries that outcome (a 499
    that still has its first byte's time, usage and parts): `relayed(exc)`. Each part's
    upstream is closed here; the handler tells the policy they ended (`parts`)."""
    loop = asyncio.get_running_loop()
    upstream = opened.upstream
    alarm = Alarm(loop, opened.deadline)
    seen = FirstForward()  # the stream's first line written (a continuation's is not)
    ttfb: float | None = None
    outcome, error, status = "ok", None, 200

    heartbeat = Heartbeat(client, on_heartbeat)
    write: Write = client.write if resume is None else resume.view.watch(client.write)
    first_sink = make_sink(write)
    mask = first_sink.mask = StreamMask([upstream.api_key.get_secret_value()])
    first_sink.usage_meter = meter
    sink: Sink = first_sink if resume is None else Guarded(first_sink)
    clock = RelayClock(
        heartbeat=settings.heartbeat, idle=upstream.idle_timeout_seconds, deadline=alarm.deadline,
        now=loop.time(), first_byte=opened.first_byte_deadline, started=bool(opened.first))
    current, usage = opened, meter.usage
    # Each streamed attempt's own meter: the first's, then each continuation's (none: no
    # list while the stream streams on its first attempt, as nearly all do).
    first_meter = meter
    continued: tuple[tuple[Opened, UsageMeter], ...] = ()
    cause: GatewayError | None = None  # the first cut, when a continuation was tried
    clean = False
    failure: str | None = None  # the provider's failure of the current attempt (its breaker's)
    anomaly: str | None = None

    alarms.add(alarm)
    try:
        try:
            await alarm.bounded(client.begin())
            if not opened.first:  # handed over before its first byte: the client has waited
                await alarm.bounded(heartbeat())
            while True:
                try:
                    forwarded = await relay_lines(
                        current.response.content, sink, meter, current.first,
                        LineSplitter(settings.max_line_bytes), clock, heartbeat, alarm, seen)
                    if forwarded is not None and ttfb is None:
                        ttfb = forwarded - started
                    closing = sink.end()
                    if closing:  # complete without its end marker: the gateway ends it
                        await alarm.bounded(write(closing))
                        anomaly = "no_end_marker"
                    clean = True
                    if cause is not None and resume is not None:
                        resume.continuation.count("ok")
                    break
                except (ClientGone, Stopped):
                    raise
                except GatewayError as exc:
                    if isinstance(exc, UpstreamError):
                        failure = exc.message  # the current attempt's, for its breaker
                    if resume is None or not resume.view.resumable(first_sink):
                        if cause is not None and resume is not None:
                            resume.continuation.count("failed")
                        raise cause or exc from None
                    cause = cause or exc
                    if ttfb is None and seen.at is not None:  # before a continuation's
                        ttfb = seen.at - started
                    current.response.close()
                    cut, failure = current, None
                    try:  # the cut attempt's verdict (a failure) goes with the question
                        current = await _reopen(client, resume, cut, exc.message, settings, alarms,
                                                on_heartbeat)
                    except NoContinuation:
                        resume.continuation.count("unavailable")
                        raise cause from None
                    except UpstreamError:
                        resume.continuation.count("failed")
                        raise cause from None
                    before = _sum(usage, meter.usage) if usage is not meter.usage else meter.usage
                    speaks = resume.continuation.meters(current)  # as the route reads it
                    usage, meter = before, UsageMeter(speaks, 0)
                    continued = (*continued, (current, meter))
                    sink = Splice(write, first_sink.shape, resume.view, speaks, before, meter)
                    sink.mask = StreamMask([*mask.secrets, current.upstream.api_key.get_secret_value()])
                    mask = sink.mask
                    clock = RelayClock(
                        heartbeat=settings.heartbeat, idle=current.upstream.idle_timeout_seconds,
                        deadline=alarm.deadline, now=loop.time(), first_byte=current.first_byte_deadline,
                        started=bool(current.first))
        except ClientGone:
            raise
        except GatewayError as exc:
            # What reaches the client's error event and the log line: no upstream key in it.
            exc.message = mask.text(exc.message)
            outcome, error = exc.outcome, exc.message
            if resume is not None:  # after a continuation's numbered events
                first_sink.numbered(resume.view.spot.last_number)
            if isinstance(exc, UpstreamError):  # the provider's failure, not the client's or drain's
                failure = failure or exc.message
            if isinstance(exc, Stopped):
                outcome = "shed"
            await alarm.bounded(first_sink.error(exc))
        await alarm.bounded(client.finish())
    except (ConnectionResetError, ClientGone) as exc:
        outcome, status = "client_disconnected", 499
        error = exc.message if isinstance(exc, ClientGone) else None
        client.abort()
    except asyncio.CancelledError as exc:
        if not alarm.write_cancelled():  # the client went away: the handler is cancelled
            setattr(exc, _RELAYED, RelayOutcome(
                _total(usage, meter), _first(ttfb, seen, started), 499, "client_disconnected",
                None, _parts(opened, first_meter, continued), clean, failure, anomaly))
            raise
        outcome, status = "client_disconnected", 499
        error = "the client stopped reading; the stream's deadline passed"
        client.abort()
    finally:
        alarms.discard(alarm)
        alarm.close()
        if clean:
            current.response.release()
        else:
            current.response.close()
    return RelayOutcome(_total(usage, meter), _first(ttfb, seen, started), status, outcome, error,
                        _parts(opened, first_meter, continued), clean, failure, anomaly)


# The outcome's parts, as module functions: a closure over the stream's locals would make
# each of them a cell, memory that every idle stream holds (and a slower read of each).

def _first(ttfb: float | None, seen: FirstForward, started: float) -> float | None:
    """A stream's first byte is its first attempt's: a continuation's doesn't replace it."""
    if ttfb is None and seen.at is not None:  # failed or cut after it
        return seen.at - started
    return ttfb


def _total(usage: Usage, meter: UsageMeter) -> Usage:
    return meter.usage if usage is meter.usage else _sum(usage, meter.usage)


def _parts(first: Opened, meter: UsageMeter, continued: tuple[tuple[Opened, UsageMeter], ...]
           ) -> tuple[tuple[Opened, Usage], ...]:
    return ((first, meter.usage.copy()), *((part, m.usage.copy()) for part, m in continued))


class Heartbeat:
    """`await heartbeat()`: a `: ping` to the client, counted (a closure would hold cells)."""

    __slots__ = ("client", "counted")

    def __init__(self, client: ClientStream, counted: Callable[[], None]) -> None:
        self.client = client
        self.counted = counted

    async def __call__(self) -> None:
        await self.client.write(HEARTBEAT)
        self.counted()


_RELAYED = "gateway_relayed"


def relayed(exc: BaseException) -> RelayOutcome | None:
    """The outcome a cancelled `stream_answer` carries on its `CancelledError`."""
    found = getattr(exc, _RELAYED, None)
    return found if isinstance(found, RelayOutcome) else None


async def _reopen(client: ClientStream, resume: Resume, cut: Opened, failure: str,
                  settings: StreamSettings, alarms: set[Stoppable],
                  on_heartbeat: Callable[[], None]) -> Opened:
    """The continuation of a cut stream. While it is asked for (retries and a slow first byte
    included), the client gets `: ping`s every heartbeat interval when its stream is between
    events, and drain can stop the wait (then `Stopped`)."""
    asked = resume.continuation.reopen(cut, resume.view.streamed, failure)
    if not settings.heartbeat or not resume.view.between_events:
        return await asked
    pings = EarlyCommit.pinging(client.write, settings.heartbeat, on_heartbeat)
    return await pings.around(asked,
                              asyncio.get_running_loop().time() + settings.heartbeat, alarms)


def _sum(a: Usage, b: Usage) -> Usage:
    """Two attempts' usage: both are charged."""
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                 a.reported or b.reported, a.cache_read_tokens + b.cache_read_tokens,
                 a.cache_write_tokens + b.cache_write_tokens)
