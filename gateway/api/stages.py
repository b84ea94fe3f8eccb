"""The stages every API handler shares: who is asking, opening the upstream, and the answer
(JSON or a relayed stream), with what each stage learnt written into the request's record.

The handler is the only writer of its record besides the middleware that made it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from ..admission.ticket import Ticket
from ..auth import presented_key
from ..config import Tenant
from ..dialects import Dialect, Usage, UsageMeter
from ..errors import GatewayError, UpstreamError
from ..record import Record
from ..relay.early import EarlyCommit, sse_response
from ..relay.loop import Stopped
from ..relay.resume import ClientView, Resume, with_prefill
from ..relay.sinks import Sink, Write
from ..relay.stream import RelayOutcome, StreamSettings, stream_answer
from ..routing import Plan, Target
from ..shapes import ErrorShape
from ..spend import micros_to_usd
from ..state import METRICS, RUNTIME, UPSTREAMS, Snapshot
from ..tags import request_tags
from ..upstream import Opened
from ..upstream.continuation import continuation_targets, open_continuation

BodyFor = Callable[[Target], bytes]


def authenticate(request: web.Request, live: Snapshot, record: Record) -> Tenant:
    """The tenant, by the request's one snapshot (`live`), which the record keeps for the
    trace; the key's id and the request's `x-gateway-tags` go into the record too."""
    record.config = live.config
    tenant, record.key_id = live.auth.identify(presented_key(request))
    record.tenant = tenant
    record.tags = request_tags(request.headers)
    return tenant


class Tried:
    """`body_for`, remembering the target it was last asked for: the one whose answer (a 4xx
    that is not retried) the handler may have to translate."""

    def __init__(self, body_for: BodyFor) -> None:
        self._body_for = body_for
        self.target: Target | None = None

    def __call__(self, target: Target) -> bytes:
        self.target = target
        return self._body_for(target)


def early_commit(request: web.Request, live: Snapshot, record: Record) -> EarlyCommit | None:
    """For a stream (when heartbeats are on): the headers and heartbeats a client gets once
    it has waited a heartbeat interval while `open_upstream` still tries targets."""
    heartbeat = live.config.server.heartbeat_seconds
    if not record.stream or not heartbeat:
        return None
    return EarlyCommit(request, record.request_id, record.headers, heartbeat,
                       request.app[METRICS].heartbeats.inc)


async def open_upstream(request: web.Request, live: Snapshot, record: Record, plan: Plan,
                        body_for: BodyFor, early: EarlyCommit | None = None) -> Opened:
    """With `early`, the client gets headers and heartbeats from one heartbeat interval after
    arrival while every target may still fail over; the stream is handed over at its first
    data byte. Without it, a stream still silent then is handed over body-less (no failover
    after that)."""
    heartbeat = live.config.server.heartbeat_seconds
    commit_at = None
    if early is None and record.stream and heartbeat:
        commit_at = record.arrived + heartbeat
    opening = request.app[UPSTREAMS].open(
        plan, body_for, request.headers, record.request_id, stream=record.stream,
        deadline=record.arrived + plan.targets[0].upstream.total_timeout_seconds, commit_at=commit_at,
        attempts=record.attempts)
    try:
        if early is None:
            opened = await opening
        else:  # heartbeats from one interval after arrival; drain may stop it
            opened = await early.around(opening, record.arrived + heartbeat, request.app[RUNTIME].alarms)
    except UpstreamError as exc:
        _name_last_upstream(record, plan)
        record.retries = exc.retries
        raise
    except Stopped:  # drain ran out of time while the client had heartbeats
        _name_last_upstream(record, plan)
        raise
    record.upstream, record.retries = opened.upstream.name, opened.retries
    return opened


def _name_last_upstream(record: Record, plan: Plan) -> None:
    """The log names the upstream that failed last (its status and body are in `attempts`)."""
    tried = [a for a in record.attempts if a.outcome != "skipped"]
    record.upstream = tried[-1].upstream if tried else plan.targets[-1].upstream.name


async def end_committed(response: web.StreamResponse, record: Record, shape: ErrorShape,
                        exc: GatewayError) -> web.StreamResponse:
    """No target answered after the client got its 200 and heartbeats: one error event in the
    route's shape ends the stream."""
    record.status, record.outcome, record.error = 200, exc.outcome, exc.message
    try:
        await response.write(shape.event(exc))
        await response.write_eof()
    except ConnectionResetError:
        record.status, record.outcome = 499, "client_disconnected"
    return response


def json_answer(opened: Opened, prompt_estimate: int, dialect: Dialect,
                translate: Callable[[dict[str, Any]], bytes] | None = None) -> tuple[web.Response, Usage]:
    """Non-stream: the upstream's status, body and content type, as they are; usage read by
    `dialect` from the upstream's own body. `translate` maps a JSON object body into the
    client's dialect (then the content type is JSON)."""
    try:
        parsed = orjson.loads(opened.first)
    except orjson.JSONDecodeError:
        parsed = None
    found = dialect.usage_from_body(parsed) if isinstance(parsed, dict) else None
    response = opened.response
    content_type = response.headers.get("Content-Type", "application/json").split(";")[0]
    response.release()
    body = opened.first
    if translate is not None and isinstance(parsed, dict):
        body, content_type = translate(parsed), "application/json"
    answer = web.Response(status=response.status, body=body, content_type=content_type)
    return answer, found or Usage(prompt_tokens=prompt_estimate)


async def stream_to_client(request: web.Request, live: Snapshot, record: Record, ticket: Ticket,
                           opened: Opened, dialect: Dialect,
                           make_sink: Callable[[Write], Sink],
                           resume: Resume | None = None,
                           early: EarlyCommit | None = None) -> web.StreamResponse:
    """Relay the opened stream into a sink; `dialect` meters the UPSTREAM's lines. How it
    ended (usage, cost per attempt, status, TTFB) goes into the ticket and the record here."""
    app = request.app
    # The meter's usage grows as lines arrive: settled with it now, a stream the client
    # leaves midway is still charged for what was received.
    meter = UsageMeter(dialect, ticket.prompt_estimate)
    ticket.settle(meter.usage)
    record.usage = meter.usage
    server = live.config.server
    response, outcome = await stream_answer(
        request, opened, make_sink, meter,
        response=(early.response if early is not None and early.response is not None
                  else sse_response(record.request_id, ticket.headers)),
        settings=StreamSettings(server.heartbeat_seconds, server.max_line_bytes),
        started=record.started, alarms=app[RUNTIME].alarms,
        on_heartbeat=app[METRICS].heartbeats.inc,
        on_cancel=lambda gone: note_relayed(record, ticket, gone), resume=resume)
    note_relayed(record, ticket, outcome)
    if outcome.anomaly is not None and outcome.parts:  # the upstream that ended the stream
        metrics = app[METRICS]
        metrics.upstream_errors.labels(outcome.parts[-1][0].upstream.name, outcome.anomaly).inc()
    return response


def note_relayed(record: Record, ticket: Ticket, outcome: RelayOutcome) -> None:
    """How the stream ended, into the record and the ticket: the same on a return and on a
    cancel (the client went away after its first byte: its TTFB, usage and cost still count)."""
    record.ttfb, record.status = outcome.ttfb, outcome.status
    record.outcome, record.error = outcome.outcome, outcome.error
    record.midstream_error = outcome.outcome in ("upstream_error", "upstream_timeout")
    ticket.settle(outcome.usage)  # after a resume: every part's usage, not the first one's
    record.usage = outcome.usage
    charge_attempts(record, ticket, outcome.parts)
    # After a mid-stream resume: each part but the last was cut after its first byte, and the
    # upstream that answered last is the request's.
    for opened, _ in outcome.parts[:-1]:
        if 0 <= opened.attempt < len(record.attempts):
            record.attempts[opened.attempt].outcome = "cut"
    if len(outcome.parts) > 1:
        record.upstream = outcome.parts[-1][0].upstream.name


def charge_attempts(record: Record, ticket: Ticket, parts: Sequence[tuple[Opened, Usage]]) -> None:
    """Each attempt that answered gets its own usage and cost (at its own model) in the
    record's `attempts`; every other attempt stays at cost 0. After a mid-stream resume the
    request's cost is the sum of its parts, so the line's total and its attempts agree."""
    total: int | None = None
    for opened, usage in parts:
        micros = ticket.prices.usage_cost_micros(opened.target.model, usage) \
            if ticket.prices is not None else None
        if micros is not None:
            total = (total or 0) + micros
        if not 0 <= opened.attempt < len(record.attempts):
            continue
        answered = record.attempts[opened.attempt]
        answered.usage = usage
        answered.cost_usd = micros_to_usd(micros) if micros is not None else 0.0
    if len(parts) > 1:
        ticket.split_cost_micros = total


def resumer(request: web.Request, record: Record, plan: Plan, body_for: BodyFor, client: str,
            include_usage: bool, prompt_estimate: int) -> Resume:
    """Mid-stream resume for a stream of `plan` (`resume_midstream = true`): a cut stream
    continues on the cut target itself or a later one of the plan that `supports_prefill`
    (see `upstream/continuation.py`), asked the original request plus the streamed text
    (`with_prefill`, in the shape of the client's API)."""
    app = request.app
    upstreams = app[UPSTREAMS]
    used: set[tuple[str, str]] = set()  # the targets this stream was continued on already

    async def reopen(cut: Opened, text: str) -> Opened:
        candidates = continuation_targets(plan.targets, cut.target, used, upstreams.continuations)

        def open_plan(sub: Plan, asked: Callable[[Target], None]) -> Awaitable[Opened]:
            def body(target: Target) -> bytes:
                asked(target)
                return with_prefill(body_for(target), text, client)
            return upstreams.open(
                sub, body, request.headers, record.request_id, stream=True,
                deadline=record.arrived + sub.targets[0].upstream.total_timeout_seconds,
                attempts=record.attempts)

        return await open_continuation(plan.name, candidates, open_plan, upstreams.continuations, used)

    def count(result: str) -> None:
        app[METRICS].midstream_recoveries.labels(record.route, result).inc()

    return Resume(ClientView(client, include_usage), reopen, count, prompt_estimate)
