"""The one sequence of stages every route that calls an upstream runs: who is asking, the
body, the plan, admission, the upstream, the answer (JSON, or a stream relayed into a sink),
and the settlement. What differs between routes is an `UpstreamRoute` value (how a body is
read and built per target, its error shape, how an answer is metered, translated and sunk).

Rules:
- One snapshot of the live config per request (`snapshot`), taken here, passed down.
- Lower stages hand back values: the policy its attempts (`Opened.attempts`, or
  `tries_of(exc)`), the relay its `RelayOutcome` (or, cancelled, `relayed(exc)`), and a
  continuation comes from `Continue`, which the relay asks through its `Continuation`
  interface. This module (with `stages.py`) is the only writer of the request's record, and
  it gives admission its `Charge` as a value, in its own `finally`.
- A stream may last minutes: its frame drops the parsed body before the relay starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..admission.ticket import Charge, Ticket
from ..body import Call
from ..config import Tenant
from ..dialects import DIALECTS, Dialect, Usage, UsageMeter
from ..errors import GatewayError, UpstreamError, UpstreamHTTPError
from ..live import Snapshot
from ..record import Record
from ..relay.client import HttpStream
from ..relay.early import sse_response
from ..relay.loop import Stopped
from ..relay.resume import ClientView, Resume
from ..relay.sinks import Sink, Write
from ..relay.stream import RelayOutcome, StreamSettings, relayed, stream_answer
from ..routing import Plan, Target
from ..shapes import ANTHROPIC_SHAPE, ErrorShape
from ..state import GATE, LIVE, METRICS, RECORD, RUNTIME, UPSTREAMS
from ..upstream import Opened, UpstreamClient
from ..upstream.attempt import Attempt, tries_of
from ..upstream.continuation import continuation_targets, open_continuation
from .stages import (
    BodyFor,
    Tried,
    authenticate,
    early_commit,
    end_committed,
    json_answer,
    open_upstream,
    settle_answer,
    settle_stream,
)

SinkMaker = Callable[[Write], Sink]


class UpstreamRoute:
    """What one API route does differently; a frozen value its handler is a partial of.
    Subclasses: `api.chat.ChatRoute`, `api.apis.PassRoute`."""

    __slots__ = ()
    shape: ErrorShape
    tokens: bool = True  # False: admitted by request count only, nothing charged
    answers: bool = True  # False: no generated tokens (embeddings): the prompt only is reserved

    async def read(self, request: web.Request) -> Call:
        raise NotImplementedError

    def streams(self, call: Call) -> bool:
        return call.stream

    def plan(self, snapshot: Snapshot, tenant: Tenant, call: Call, path: str) -> Plan:
        raise NotImplementedError

    def prepare(self, call: Call, plan: Plan, snapshot: Snapshot) -> UpstreamRoute:
        """This request's route value: itself, or a copy holding what one request needs
        across the stages (a translation bridge), made before admission (raises to refuse)."""
        return self

    def body_for(self, call: Call, snapshot: Snapshot) -> BodyFor:
        raise NotImplementedError

    def refused(self, exc: UpstreamHTTPError, target: Target | None) -> tuple[GatewayError, bool]:
        """No target answered but an upstream refused: the error to answer with, and whether
        it was translated into the client's dialect."""
        return exc, False

    def speaks(self, target: Target) -> Dialect:
        """The dialect of the request `body_for` builds for `target`, and of its answer: what
        a continuation's prefill is asked in, and what reads usage and ends (`meters`)."""
        return DIALECTS[target.upstream.dialect]

    def meters(self, opened: Opened) -> Dialect:
        """The dialect that reads usage and ends from the upstream's answer."""
        return self.speaks(opened.target)

    def translates(self, opened: Opened) -> bool:
        return False

    def json(self, opened: Opened) -> Callable[[dict[str, Any]], bytes] | None:
        """A JSON answer's translation into the client's dialect, or None (as it is)."""
        return None

    async def vet(self, app: web.Application, tenant: Tenant, call: Call) -> None:
        """A check of the request's own before it is planned and admitted (raises to refuse)."""

    def answered(self, app: web.Application, tenant: Tenant, opened: Opened, status: int) -> None:
        """A JSON answer (`status`) went out for `opened` (its body: `opened.first`)."""

    def sink(self, opened: Opened, call: Call, ticket: Ticket, snapshot: Snapshot,
             app: web.Application, tenant: Tenant) -> SinkMaker:
        raise NotImplementedError

    def view(self, call: Call) -> ClientView | None:
        """What a mid-stream resume reads of the client's stream; None: never resumed."""
        return None


async def run(request: web.Request, route: UpstreamRoute) -> web.StreamResponse:
    app = request.app
    snapshot = app[LIVE].current
    record = request[RECORD]
    tenant = authenticate(request, snapshot, record)
    call = await route.read(request)
    record.model, record.stream = call.model, route.streams(call)
    await route.vet(app, tenant, call)
    plan = route.plan(snapshot, tenant, call, request.path)
    route = route.prepare(call, plan, snapshot)
    admitted = app[GATE].admit(tenant, call.body, call.raw, slot=True, prices=snapshot.prices,
                               tokens=route.tokens, answer=route.answers, models=plan.models)
    ticket = await admitted.enter()
    record.headers, record.queue_wait = ticket.headers, ticket.queue_wait
    charge: Charge | None = None
    try:
        tried = Tried(route.body_for(call, snapshot))
        early = early_commit(request, snapshot, record, route.shape)  # heartbeats don't end failover
        try:
            opened = await open_upstream(request, snapshot, record, plan, tried, early)
        except (UpstreamError, Stopped) as exc:  # no target answered, or drain stopped it
            if early is not None and early.response is not None:  # the client has its 200
                return await end_committed(early.response, record, route.shape, exc)
            if isinstance(exc, UpstreamHTTPError):
                error, record.translated = route.refused(exc, tried.target)
                raise error from None
            raise
        dialect = route.meters(opened)
        record.translated = route.translates(opened)
        if not record.stream:
            answer, usage = json_answer(opened, ticket.prompt_estimate, dialect, route.json(opened))
            route.answered(app, tenant, opened, answer.status)
            charge = settle_answer(record, ticket, opened, usage if route.tokens else Usage())
            return answer
        continuation: Continue | None = None
        resume: Resume | None = None
        if plan.resume_midstream and (view := route.view(call)) is not None:
            # keeps the request's body, to ask a continuation with it
            continuation = Continue(app[UPSTREAMS], plan, tried, request, record, route.speaks)
            resume = Resume(view, continuation)
        make_sink = route.sink(opened, call, ticket, snapshot, app, tenant)
        del call, tried  # a stream may last minutes: its parsed body is not held meanwhile
        # The meter's usage grows as lines arrive: a stream that ends in any way (a bug
        # included) is charged for what was received.
        meter = UsageMeter(dialect, ticket.prompt_estimate)
        outcome: RelayOutcome | None = None
        server = snapshot.config.server
        sse = (early.response if early is not None and early.response is not None
               else sse_response(record.request_id, ticket.headers, route.shape is ANTHROPIC_SHAPE))
        try:
            outcome = await stream_answer(
                HttpStream(request, sse), opened, make_sink, meter,
                settings=StreamSettings(server.heartbeat_seconds, server.max_line_bytes),
                started=record.started, alarms=app[RUNTIME].alarms,
                on_heartbeat=app[METRICS].heartbeats.inc,
                resume=resume)
        except asyncio.CancelledError as exc:  # the client went away: the relay says how far
            outcome = relayed(exc)
            raise
        finally:
            more = continuation.attempts if continuation is not None else []
            charge = settle_stream(record, ticket, opened, meter, outcome, more)
            end_streams(app[UPSTREAMS], opened, continuation, outcome)
        if outcome.anomaly is not None and outcome.parts:  # the upstream that ended the stream
            metrics = app[METRICS]
            metrics.upstream_errors.labels(outcome.parts[-1][0].upstream.name, outcome.anomaly).inc()
        return sse
    finally:
        await admitted.leave(charge)


def end_streams(upstreams: UpstreamClient, opened: Opened, continuation: Continue | None,
                outcome: RelayOutcome | None) -> None:
    """The policy hears each stream's end (a cut one's was told with the question for its
    continuation): the last one's verdict is the relay's (none when the relay had no outcome)."""
    last = outcome.parts[-1][0] if outcome is not None and outcome.parts else None
    for part in (opened, *(continuation.opened if continuation is not None else ())):
        if outcome is not None and last is not None and part is last:
            upstreams.ended(part, ok=outcome.complete, failure=outcome.failure)
        else:
            upstreams.ended(part)


class Continue:
    """The handler's side of a mid-stream resume (`relay.resume.Continuation`): a cut stream
    continues on the cut target itself or a later one of the plan that `supports_prefill`
    (`upstream/continuation.py`: a refusal moves on, and is remembered), asked the original
    request plus the streamed text (`Dialect.with_prefill`, in the dialect of the target's body). What
    it opened and tried stays here, for the handler to settle and record."""

    __slots__ = ("_upstreams", "_plan", "_body_for", "_request", "_record", "_used", "_speaks",
                 "attempts", "opened")

    def __init__(self, upstreams: UpstreamClient, plan: Plan, body_for: BodyFor,
                 request: web.Request, record: Record,
                 speaks: Callable[[Target], Dialect] | None = None) -> None:
        self._upstreams, self._plan, self._body_for = upstreams, plan, body_for
        self._request, self._record = request, record
        self._speaks = speaks  # the route's `speaks` (None: the upstream's own dialect)
        self._used: set[tuple[str, str]] = set()  # the targets that continued this stream
        self.attempts: list[Attempt] = []  # every continuation's tries, in order
        self.opened: list[Opened] = []  # every continuation that answered

    async def reopen(self, cut: Opened, text: str, failure: str) -> Opened:
        # The cut stream no longer counts in flight, and its failure counts against its target.
        upstreams = self._upstreams
        upstreams.ended(cut, failure=failure)
        candidates = continuation_targets(self._plan.targets, cut.target, self._used,
                                          upstreams.continuations)
        body_for, record = self._body_for, self._record

        async def open_plan(plan: Plan, asked: Callable[[Target], None]) -> Opened:
            def body(target: Target) -> bytes:
                asked(target)
                return self._dialect(target).with_prefill(body_for(target), text)
            try:
                opened = await upstreams.open(
                    plan, body, self._request.headers, record.request_id, stream=True,
                    deadline=record.arrived + plan.targets[0].upstream.total_timeout_seconds)
            except BaseException as exc:
                self.attempts.extend(tries_of(exc).attempts)
                raise
            self.attempts.extend(opened.attempts)
            return opened

        opened = await open_continuation(self._plan.name, candidates, open_plan,
                                         upstreams.continuations, self._used)
        self.opened.append(opened)
        return opened

    def meters(self, opened: Opened) -> Dialect:
        return self._dialect(opened.target)

    def _dialect(self, target: Target) -> Dialect:
        speaks = self._speaks
        return speaks(target) if speaks is not None else DIALECTS[target.upstream.dialect]

    def count(self, result: str) -> None:
        app = self._request.app
        app[METRICS].midstream_recoveries.labels(self._record.route, result).inc()
