"""A generation: the task that runs one resumable stream's answer into its event log.

It owns the admission (buckets, budget, a stream slot: `Admitted`) and the upstream, and runs
the same stages `/api/chat/stream` runs (the simple-event codec, failover before the first
byte, mid-stream resume when the route has it), with the log as its client: each simple
event is appended, never written to a socket.

Rules:
- It runs to its end whether or not anyone watches, and is settled once (its usage and cost
  told in one `generation` log line, with its subscriber and resume counts).
- Nobody watching (here, or through Redis from another process) for `abandon_seconds`: it is
  cancelled, the upstream closed, charged for what arrived. `cancel` (DELETE) does the same.
- Drain: while it waits for an upstream it is in the runtime's streams to stop; once it
  relays, its relay's alarm is. Either way it ends with one error event in the log.
- The stream always ends with a `done` or `error` event (a cancel appends the error).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ..admission.ticket import Admitted, Charge, Ticket
from ..api.chat import CHAT_STREAM
from ..api.pipeline import Continue, end_streams
from ..api.stages import Tried, settle_stream
from ..body import Call
from ..dialects import UsageMeter
from ..errors import GatewayError, Shed, UpstreamError, UpstreamHTTPError
from ..live import Snapshot
from ..logs import info_line
from ..record import Record, answer_fields, count_answer
from ..relay.loop import Stoppable
from ..relay.resume import Resume
from ..relay.stream import RelayOutcome, StreamSettings, relayed, stream_answer
from ..routing import Plan
from ..shapes import SIMPLE_SHAPE
from ..state import LOGGER, METRICS, RUNTIME, UPSTREAMS
from ..store.runtime import note_request
from ..upstream.attempt import tries_of
from .log import EventLog, LogFull, Writer, split_events


class ClientCancelled(GatewayError):
    """The creating tenant cancelled it (DELETE), or nobody watched it for `abandon_seconds`."""

    status = 499
    code = "stream_cancelled"
    outcome = "cancelled"


class LogStream:
    """The relay's client for a generation (`relay.client.ClientStream`): each write's simple
    events are appended to the log (heartbeats are dropped: subscribers send their own).
    Writes never wait. Past the log's bound the write raises `LogFull`; the one error event
    after it is let in."""

    __slots__ = ("writer", "full")

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.full = False

    async def begin(self) -> None:
        return None

    async def write(self, data: bytes) -> None:
        for event in split_events(bytes(data)):
            if self.full:
                self.writer.append(event, over_bound=True)
                continue
            try:
                self.writer.append(event)
            except LogFull:
                self.full = True
                raise

    async def finish(self) -> None:
        return None

    def abort(self) -> None:
        return None


def error_event(exc: GatewayError) -> bytes:
    return SIMPLE_SHAPE.event(exc)


class Generation:
    """One stream's generation in this process: its task, who watches, how it may end."""

    __slots__ = ("stream_id", "tenant", "writer", "task", "subscribers", "watchers", "resumes",
                 "stopping", "_log", "_abandon", "_timer", "_registry")

    def __init__(self, stream_id: str, tenant: str, writer: Writer, log: EventLog,
                 abandon_seconds: float) -> None:
        self.stream_id = stream_id
        self.tenant = tenant
        self.writer = writer
        self.task: asyncio.Task[None] | None = None
        self.subscribers = 0  # every subscription so far (this process)
        self.watchers = 0  # subscribed now (this process)
        self.resumes = 0  # subscriptions that came back with a Last-Event-ID
        #: why it is being stopped (a cancel, drain, abandon), as the error its log ends with
        self.stopping: GatewayError | None = None
        self._log = log
        self._abandon = abandon_seconds
        self._timer: asyncio.TimerHandle | None = None
        self._registry: set[Stoppable] | None = None
        self._watch_for_abandon()

    # -- who watches ------------------------------------------------------------------------

    def joined(self, resumed: bool) -> None:
        self.subscribers += 1
        self.watchers += 1
        self.resumes += resumed
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def left(self) -> None:
        self.watchers -= 1
        if not self.watchers:
            self._watch_for_abandon()

    def _watch_for_abandon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._abandon, self._check_abandon)

    def _check_abandon(self) -> None:
        self._timer = None
        if self.watchers or self.task is None or self.task.done():
            return
        asyncio.get_running_loop().create_task(self._abandon_unless_watched())

    async def _abandon_unless_watched(self) -> None:
        if await self._log.watched(self.stream_id):  # a subscriber through another process
            if not self.watchers:
                self._watch_for_abandon()
            return
        if not self.watchers:
            self.cancel(ClientCancelled(f"nobody watched the stream for {self._abandon:g} s"))

    # -- how it ends ------------------------------------------------------------------------

    def cancel(self, why: GatewayError) -> None:
        """Stop it now (upstream closed, charged for what arrived); its log ends with `why`."""
        if self.task is not None and not self.task.done() and self.stopping is None:
            self.stopping = why
            self.task.cancel()

    def stop(self, reason: str) -> None:
        """Drain (while it waits for an upstream: see `waiting`)."""
        self.cancel(Shed(reason, reason="draining", retry_after=5))

    def waiting(self, registry: set[Stoppable]) -> None:
        """While it waits for an upstream, drain finds it in `registry`."""
        self._registry = registry
        registry.add(self)

    def relaying(self) -> None:
        """The relay's own alarm takes over (drain stops the relay, which ends the log)."""
        if self._registry is not None:
            self._registry.discard(self)
            self._registry = None

    def ended(self) -> None:
        self.relaying()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def generate(request: web.Request, snapshot: Snapshot, record: Record, plan: Plan, call: Call,
                   admitted: Admitted, ticket: Ticket, generation: Generation) -> None:
    """The generation's task: `/api/chat/stream`'s stages (its route value, `CHAT_STREAM`) into
    the log, then settle and tell. `record` is the generation's own (not its creating
    request's): told once, at its end."""
    app = request.app
    runtime, server, upstreams = app[RUNTIME], snapshot.config.server, app[UPSTREAMS]
    writer = generation.writer
    tenant = record.tenant
    assert tenant is not None  # the generation's record is made with its tenant
    charge: Charge | None = None
    runtime.enter()  # drain waits for it like for a request
    try:
        try:
            tried = Tried(CHAT_STREAM.body_for(call, snapshot))
            generation.waiting(runtime.alarms)
            try:
                opened = await upstreams.open(
                    plan, tried, request.headers, record.request_id, stream=True,
                    deadline=record.arrived + plan.targets[0].upstream.total_timeout_seconds)
            except BaseException as exc:  # each carries what was tried
                tries = tries_of(exc)
                record.attempts.extend(tries.attempts)
                if isinstance(exc, UpstreamError):
                    named = [a for a in record.attempts if a.outcome != "skipped"]
                    record.upstream = named[-1].upstream if named else plan.targets[-1].upstream.name
                    record.retries = tries.retries
                    if isinstance(exc, UpstreamHTTPError):
                        raise CHAT_STREAM.refused(exc, tried.target)[0] from None
                raise
            finally:
                generation.relaying()
            record.attempts.extend(opened.attempts)
            record.upstream, record.retries = opened.upstream.name, opened.retries
            continuation: Continue | None = None
            resume: Resume | None = None
            if plan.resume_midstream:
                continuation = Continue(upstreams, plan, tried, request, record)
                resume = Resume(CHAT_STREAM.view(call), continuation)
            make_sink = CHAT_STREAM.sink(opened, call, ticket, snapshot, app, tenant)
            del call, tried
            meter = UsageMeter(opened.dialect, ticket.prompt_estimate)
            outcome: RelayOutcome | None = None
            try:
                outcome = await stream_answer(
                    LogStream(writer), opened, make_sink, meter,
                    settings=StreamSettings(0, server.max_line_bytes), started=record.started,
                    alarms=runtime.alarms, on_heartbeat=_no_heartbeat, resume=resume)
            except asyncio.CancelledError as exc:  # ours: the relay says how far it got
                outcome = relayed(exc)
                raise
            finally:  # a cancel still charges what arrived
                charge = settle_stream(record, ticket, opened, meter, outcome,
                                       continuation.attempts if continuation is not None else ())
                end_streams(upstreams, opened, continuation, outcome)
        except GatewayError as exc:  # before the first byte: no upstream answered, drain
            record.status, record.outcome, record.error = exc.status, exc.outcome, exc.message
            writer.end(error_event(exc))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # ours (cancel, abandon, drain): the task ends normally
            why = generation.stopping or ClientCancelled("the stream was cancelled")
            record.status = record.status or 200
            record.outcome, record.error = why.outcome, why.message
            writer.end(error_event(why))
    finally:
        writer.end(error_event(UpstreamError("the stream ended without an answer")))  # unless it did
        generation.ended()
        try:
            await admitted.leave(charge)  # settles the books with what arrived
        finally:
            runtime.leave()
            tell_generation(app, record, generation)


def _no_heartbeat() -> None:
    """The generation sends no heartbeats (its subscribers do)."""


def tell_generation(app: web.Application, record: Record, generation: Generation) -> None:
    """The generation's usage and cost, told once: metrics, one `generation` log line (with
    its subscriber and resume counts) and its spend row. Its HTTP requests have their own
    lines, without usage."""
    duration = time.perf_counter() - record.started
    cost, unpriced = count_answer(record, app[METRICS], duration)
    fields = answer_fields(record, duration, cost, unpriced)
    fields["stream_id"] = generation.stream_id[:8] + "..."  # the id is a capability: never whole
    fields["subscribers"], fields["resumes"] = generation.subscribers, generation.resumes
    info_line(app[LOGGER], "generation", fields)
    note_request(app, record)
