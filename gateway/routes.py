"""The route table, and the API handlers that run a request through the stages, top to
bottom: auth -> body -> routing -> admission -> upstream -> relay into a sink.

Each stage hands its result forward; the handler writes what came back into the request's
record (the only writer besides the middleware that made it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from .auth import presented_key
from .body import Call, dumps, read_chat
from .config import Tenant
from .dialects import ANTHROPIC, DIALECTS, OPENAI, Dialect, Usage, UsageMeter
from .errors import UpstreamError
from .record import Record
from .relay.loop import Write
from .relay.sinks import PassThrough, SimpleEvents, Sink
from .relay.stream import StreamSettings, stream_answer
from .routing import Plan, Target
from .shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, SIMPLE_SHAPE, ErrorShape
from .state import GATE, LIVE, METRICS, RECORD, RUNTIME, UPSTREAMS, Snapshot
from .upstream import Opened

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    name: str  # the `route` label and log field
    handler: Handler
    shape: ErrorShape  # how errors are written on this route


def _authenticate(request: web.Request, live: Snapshot, record: Record) -> Tenant:
    tenant = live.auth.tenant_for(presented_key(request))
    record.tenant = tenant
    return tenant


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, OPENAI, OPENAI_SHAPE)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _chat(request, ANTHROPIC, ANTHROPIC_SHAPE)


async def chat_stream(request: web.Request) -> web.StreamResponse:
    return await _chat(request, None, SIMPLE_SHAPE)


async def _chat(request: web.Request, client: Dialect | None, shape: ErrorShape) -> web.StreamResponse:
    """`client` is the route's dialect (None: the browser's simple events)."""
    app = request.app
    live = app[LIVE].current
    record = request[RECORD]
    tenant = _authenticate(request, live, record)
    call = await read_chat(request)
    record.model, record.stream = call.model, call.stream or client is None
    plan = live.router.route(tenant, call.model, client.name if client else None)
    async with app[GATE].admit(tenant, call.body, call.raw, slot=True) as ticket:
        record.headers, record.queue_wait = ticket.headers, ticket.queue_wait
        opened = await _open(request, live, record, plan, _body_for(call, client))
        response: web.StreamResponse
        if not record.stream:
            response, usage = _json_answer(opened, ticket.prompt_estimate)
        else:
            # The meter's usage grows as lines arrive: settled with it now, a stream the
            # client leaves midway is still charged for what was received.
            meter = UsageMeter(opened.dialect, ticket.prompt_estimate)
            ticket.settle(meter.usage)
            record.usage = meter.usage
            server = live.config.server
            response, outcome = await stream_answer(
                request, opened, _sink_maker(client, shape, opened), meter,
                headers={"x-request-id": record.request_id, **ticket.headers},
                settings=StreamSettings(server.heartbeat_seconds, server.max_line_bytes),
                started=record.started, alarms=app[RUNTIME].alarms,
                on_heartbeat=app[METRICS].heartbeats.inc)
            usage = outcome.usage
            record.ttfb, record.status = outcome.ttfb, outcome.status
            record.outcome, record.error = outcome.outcome, outcome.error
            record.midstream_error = outcome.outcome in ("upstream_error", "upstream_timeout")
        ticket.settle(usage)
        record.usage = usage
    return response


def _sink_maker(client: Dialect | None, shape: ErrorShape, opened: Opened) -> Callable[[Write], Sink]:
    upstream = opened.dialect
    if client is None:
        return lambda write: SimpleEvents(write, upstream)
    return lambda write: PassThrough(write, shape, upstream.end_markers, upstream.error_markers)


def _body_for(call: Call, client: Dialect | None) -> Callable[[Target], bytes]:
    def body_for(target: Target) -> bytes:
        if client is not None and target.model == call.model:
            return call.raw  # pass-through: the client's bytes, as they are
        if client is not None:
            return dumps({**call.body, "model": target.model})
        body = DIALECTS[target.upstream.dialect].simple_request(call.body)
        return dumps({**body, "model": target.model})
    return body_for


async def _open(request: web.Request, live: Snapshot, record: Record, plan: Plan,
                body_for: Callable[[Target], bytes]) -> Opened:
    heartbeat = live.config.server.heartbeat_seconds
    # A stream whose client has waited a heartbeat interval is handed over before its first
    # byte, so the client gets headers and heartbeats instead of silence.
    commit_at = record.arrived + heartbeat if record.stream and heartbeat else None
    try:
        opened = await request.app[UPSTREAMS].open(
            plan.targets, body_for, request.headers, record.request_id, stream=record.stream,
            deadline=record.arrived + plan.targets[0].upstream.total_timeout_seconds, commit_at=commit_at)
    except UpstreamError as exc:
        record.upstream, record.retries = plan.targets[-1].upstream.name, exc.retries
        raise
    record.upstream, record.retries = opened.upstream.name, opened.retries
    return opened


def _json_answer(opened: Opened, prompt_estimate: int) -> tuple[web.Response, Usage]:
    """Non-stream: the upstream's status, body and content type, as they are."""
    try:
        found = opened.dialect.usage_from_body(orjson.loads(opened.first))
    except (orjson.JSONDecodeError, AttributeError):
        found = None
    response = opened.response
    content_type = response.headers.get("Content-Type", "application/json").split(";")[0]
    response.release()
    answer = web.Response(status=response.status, body=opened.first, content_type=content_type)
    return answer, found or Usage(prompt_tokens=prompt_estimate)


async def models(request: web.Request) -> web.StreamResponse:
    live = request.app[LIVE].current
    tenant = _authenticate(request, live, request[RECORD])
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": upstream}
        for model, upstream in live.router.models_for(tenant)
    ]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}),
                        content_type="application/json")


ROUTES = (
    Route("POST", "/v1/chat/completions", "chat_completions", chat_completions, OPENAI_SHAPE),
    Route("POST", "/v1/messages", "messages", messages, ANTHROPIC_SHAPE),
    Route("GET", "/v1/models", "models", models, OPENAI_SHAPE),
    Route("POST", "/api/chat/stream", "chat_stream", chat_stream, SIMPLE_SHAPE),
)
BY_PATH = {route.path: route for route in ROUTES}
BY_NAME = {route.name: route for route in ROUTES}


def shape_for(path: str) -> ErrorShape:
    """The error shape of a path no route matched (an SDK call we don't serve): Anthropic's
    under `/v1/messages`, OpenAI's elsewhere."""
    route = BY_PATH.get(path)
    if route is not None:
        return route.shape
    return ANTHROPIC_SHAPE if path.startswith("/v1/messages/") else OPENAI_SHAPE
