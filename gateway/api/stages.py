"""The stages the pipeline (`pipeline.py`) runs, and how each one's value goes into the
request's record: who is asking, opening the upstream (its attempts), the answer (JSON, or
how a stream ended) and its charge.

The pipeline and these functions are the only writers of the record besides the middleware
that made it, and they write it only from the values the stages hand back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from ..admission.anomaly import clamp_cost, clamp_usage
from ..admission.ticket import Charge, Ticket
from ..auth import presented_key
from ..config import Tenant
from ..dialects import Dialect, Usage, UsageMeter
from ..errors import GatewayError, UpstreamError
from ..live import Snapshot
from ..record import Record
from ..relay.early import EarlyCommit
from ..relay.loop import Stopped
from ..relay.stream import RelayOutcome
from ..routing import Plan, Target
from ..shapes import ANTHROPIC_SHAPE, ErrorShape
from ..spend import micros_to_usd
from ..state import METRICS, RUNTIME, UPSTREAMS
from ..tags import request_tags
from ..upstream import Attempt, Opened
from ..upstream.attempt import tries_of

BodyFor = Callable[[Target], bytes]


def authenticate(request: web.Request, snapshot: Snapshot, record: Record) -> Tenant:
    """The tenant, by the request's one config snapshot, which the record keeps for the
    trace; the key's id and the request's `x-gateway-tags` go into the record too."""
    record.config = snapshot.config
    tenant, record.key_id = snapshot.auth.identify(presented_key(request))
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


def early_commit(request: web.Request, snapshot: Snapshot, record: Record,
                 shape: ErrorShape) -> EarlyCommit | None:
    """For a stream (when heartbeats are on): the headers and heartbeats a client gets once
    it has waited a heartbeat interval while `open_upstream` still tries targets."""
    heartbeat = snapshot.config.server.heartbeat_seconds
    if not record.stream or not heartbeat:
        return None
    return EarlyCommit(request, record.request_id, record.headers, heartbeat,
                       request.app[METRICS].heartbeats.inc, anthropic=shape is ANTHROPIC_SHAPE)


async def open_upstream(request: web.Request, snapshot: Snapshot, record: Record, plan: Plan,
                        body_for: BodyFor, early: EarlyCommit | None = None) -> Opened:
    """With `early`, the client gets headers and heartbeats from one heartbeat interval after
    arrival while every target may still fail over; the stream is handed over at its first
    data byte. Without it, a stream still silent then is handed over body-less (no failover
    after that)."""
    heartbeat = snapshot.config.server.heartbeat_seconds
    commit_at = None
    if early is None and record.stream and heartbeat:
        commit_at = record.arrived + heartbeat
    opening = request.app[UPSTREAMS].open(
        plan, body_for, request.headers, record.request_id, stream=record.stream,
        deadline=record.arrived + plan.targets[0].upstream.total_timeout_seconds, commit_at=commit_at)
    try:
        if early is None:
            opened = await opening
        else:  # heartbeats from one interval after arrival; drain may stop it
            opened = await early.around(opening, record.arrived + heartbeat, request.app[RUNTIME].alarms)
    except BaseException as exc:  # a failure, drain's stop, a cancel: each carries its tries
        tries = tries_of(exc)
        record.attempts.extend(tries.attempts)
        if isinstance(exc, UpstreamError | Stopped):  # Stopped: drain, while heartbeats went out
            _name_last_upstream(record, plan)
        if isinstance(exc, UpstreamError):
            record.retries = tries.retries
        raise
    record.attempts.extend(opened.attempts)
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


def settle_answer(record: Record, ticket: Ticket, opened: Opened, usage: Usage) -> Charge:
    """A JSON answer's usage and cost, into the record; the charge for admission."""
    record.usage = usage
    return _charge(record, ticket, [(opened, usage)], usage)


def settle_stream(record: Record, ticket: Ticket, opened: Opened, meter: UsageMeter,
                  outcome: RelayOutcome | None, continued: Sequence[Attempt]) -> Charge:
    """How a stream ended, into the record: the same on a return and on a cancel (the client
    went away after its first byte: its TTFB, usage and cost still count). `continued`: the
    tries of a mid-stream resume's continuations. No outcome (the relay raised a bug): what
    the first attempt's meter read is charged."""
    record.attempts.extend(continued)
    if outcome is None:
        record.usage = meter.usage
        return _charge(record, ticket, [(opened, meter.usage)], meter.usage)
    record.ttfb, record.status = outcome.ttfb, outcome.status
    record.outcome, record.error = outcome.result, outcome.error
    record.midstream_error = outcome.result in ("upstream_error", "upstream_timeout")
    record.usage = outcome.usage  # after a resume: every part's usage, not the first one's
    charge = _charge(record, ticket, outcome.parts, outcome.usage)
    # After a mid-stream resume: each part but the last was cut after its first byte, and the
    # upstream that answered last is the request's.
    for part, _ in outcome.parts[:-1]:
        if (own := part.own) is not None:
            own.outcome = "cut"
    if len(outcome.parts) > 1:
        record.upstream = outcome.parts[-1][0].upstream.name
    return charge


def _charge(record: Record, ticket: Ticket, parts: Sequence[tuple[Opened, Usage]],
            usage: Usage) -> Charge:
    """Each attempt that answered gets its own usage and cost (at its own model) in the
    record's `attempts`; every other attempt stays at cost 0. The request's cost is its usage
    at the answering model's price, or after a mid-stream resume the sum of its parts, so the
    line's total and its attempts agree. Usage no model reaches is clamped first (in place:
    the record's usage is the clamp too), and so is the cost (`admission/anomaly.py`)."""
    reported = clamp_usage(usage)
    prices = ticket.prices
    total: int | None = None
    for opened, used in parts:
        if used is not usage:  # each attempt's cost is the clamp's too
            reported = clamp_usage(used) or reported
        micros = prices.usage_cost_micros(opened.target.model, used) if prices is not None else None
        if micros is not None:
            total = (total or 0) + micros
        if (own := opened.own) is not None:
            own.usage = used
            own.cost_usd = micros_to_usd(micros) if micros is not None else 0.0
    model = parts[0][0].target.model
    # The one part's cost is the request's: worked out again only if its usage differs (a
    # stream's part is a copy of the same counts).
    if len(parts) == 1 and parts[0][1] != usage:
        total = prices.usage_cost_micros(model, usage) if prices is not None else None
    cost = None if total is None else clamp_cost(total)
    record.charged, record.cost_micros, record.charged_model = True, cost, model
    return Charge(usage, cost, model, reported)
