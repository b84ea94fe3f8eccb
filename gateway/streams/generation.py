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
from typing import Any

from aiohttp import web

from ..admission.ticket import Admitted, Ticket
from ..api.chat import _body_for, _error_message, _sink_maker
from ..api.stages import Tried, note_relayed, resumer
from ..body import Call
from ..dialects import UsageMeter
from ..errors import GatewayError, Shed, UpstreamAnswered, UpstreamError, UpstreamHTTPError
from ..logs import info_line
from ..record import Record
from ..relay.loop import Stoppable
from ..relay.stream import StreamSettings, stream_answer
from ..routing import Plan
from ..shapes import SIMPLE_SHAPE
from ..state import LOGGER, METRICS, RUNTIME, UPSTREAMS, Snapshot
from ..store.runtime import note_request
from .log import EventLog, LogFull, Writer, split_events


class ClientCancelled(GatewayError):
    """The creating tenant cancelled it (DELETE), or nobody watched it for `abandon_seconds`."""

    status = 499
    code = "stream_cancelled"
    outcome = "cancelled"


class LogResponse(web.StreamResponse):
    """The relay's client for a generation: each write's simple events are appended to the
    log (heartbeats are dropped: subscribers send their own). Writes never wait. Past the
    log's bound the write raises `LogFull`; the one error event after it is let in."""

    def __init__(self, writer: Writer) -> None:
        super().__init__()
        self.writer = writer
        self.full = False

    @property
    def prepared(self) -> bool:
        return True

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        for event in split_events(bytes(data)):
            if self.full:
                self.writer.append(event, over_bound=True)
                continue
            try:
                self.writer.append(event)
            except LogFull:
                self.full = True
                raise

    async def write_eof(self, data: bytes = b"") -> None:
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


async def generate(request: web.Request, live: Snapshot, record: Record, plan: Plan, call: Call,
                   admitted: Admitted, ticket: Ticket, generation: Generation) -> None:
    """The generation's task: `/api/chat/stream`'s stages into the log, then settle and tell.
    `record` is the generation's own (not its creating request's): told once, at its end."""
    app = request.app
    runtime, server = app[RUNTIME], live.config.server
    writer = generation.writer
    runtime.enter()  # drain waits for it like for a request
    try:
        try:
            tried = Tried(_body_for(call, None, server.default_max_tokens))
            generation.waiting(runtime.alarms)
            try:
                opened = await app[UPSTREAMS].open(
                    plan, tried, request.headers, record.request_id, stream=True,
                    deadline=record.arrived + plan.targets[0].upstream.total_timeout_seconds,
                    attempts=record.attempts)
            except UpstreamError as exc:
                tried_ = [a for a in record.attempts if a.outcome != "skipped"]
                record.upstream = tried_[-1].upstream if tried_ else plan.targets[-1].upstream.name
                record.retries = exc.retries
                raise _refusal(exc) from None
            finally:
                generation.relaying()
            record.upstream, record.retries = opened.upstream.name, opened.retries
            ticket.model = opened.target.model  # only the attempt that answered is charged
            resume = None
            if plan.resume_midstream:
                resume = resumer(request, record, plan, tried, "simple", False, ticket.prompt_estimate)
            make_sink = _sink_maker(None, SIMPLE_SHAPE, opened, False, server.max_line_bytes, ticket.prices)
            del call, tried
            meter = UsageMeter(opened.dialect, ticket.prompt_estimate)
            ticket.settle(meter.usage)  # a cancel still charges what arrived
            record.usage = meter.usage
            _, outcome = await stream_answer(
                request, opened, make_sink, meter, response=LogResponse(writer),
                settings=StreamSettings(0, server.max_line_bytes), started=record.started,
                alarms=runtime.alarms, on_heartbeat=_no_heartbeat,
                on_cancel=lambda gone: note_relayed(record, ticket, gone), resume=resume)
            note_relayed(record, ticket, outcome)
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
        record.ticket = ticket
        try:
            await admitted.__aexit__(None, None, None)  # settles the books with what arrived
        finally:
            runtime.leave()
            tell_generation(app, record, generation)


def _no_heartbeat() -> None:
    """The generation sends no heartbeats (its subscribers do)."""


def _refusal(exc: UpstreamError) -> GatewayError:
    """No upstream answered: an upstream's 4xx told in the simple shape, or the error."""
    if isinstance(exc, UpstreamHTTPError):
        return UpstreamAnswered(exc.status, _error_message(exc.body))
    return exc


def tell_generation(app: web.Application, record: Record, generation: Generation) -> None:
    """The generation's usage and cost, told once: metrics, one `generation` log line (with
    its subscriber and resume counts) and its spend row. Its HTTP requests have their own
    lines, without usage."""
    metrics = app[METRICS]
    duration = time.perf_counter() - record.started
    tenant = metrics.tenant(record.tenant.name if record.tenant else None)
    model = metrics.model(record.model)
    usage, ticket = record.usage, record.ticket
    child = metrics.child
    if usage is not None:
        child(metrics.tokens, tenant, model, "prompt").inc(usage.prompt_tokens)
        child(metrics.tokens, tenant, model, "completion").inc(usage.completion_tokens)
    if ticket is not None and ticket.cost_micros is not None:
        child(metrics.cost, tenant, model).inc(ticket.cost_usd or 0.0)
    elif ticket is not None and ticket.unpriced:
        child(metrics.unpriced, model).inc()
    if record.ttfb is not None:
        upstream = metrics.upstream(record.upstream)
        child(metrics.ttfb, tenant, model, upstream).observe(record.ttfb)
        child(metrics.stream_duration, tenant, model, upstream).observe(duration)
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "stream_id": generation.stream_id[:8] + "...",  # the id is a capability: never whole
        "tenant": record.tenant.name if record.tenant else None,
        "route": record.route,
        "model": record.model,
        "upstream": record.upstream,
        "outcome": record.outcome,
        "ttfb_ms": round(record.ttfb * 1000, 3) if record.ttfb is not None else None,
        "duration_ms": round(duration * 1000, 3),
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "usage_reported": usage.reported if usage else False,
        "retries": record.retries,
        "cost_usd": (ticket.cost_usd or 0.0) if ticket is not None and ticket.usage is not None else None,
        "subscribers": generation.subscribers,
        "resumes": generation.resumes,
    }
    if record.attempts:
        fields["attempts"] = [attempt.fields() for attempt in record.attempts]
    if record.error:
        fields["error"] = record.error[:256]
    info_line(app[LOGGER], "generation", fields)
    note_request(app, record)
