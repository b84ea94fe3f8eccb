"""The pass-through routes, top to bottom: auth -> body -> route -> admission -> upstream -> relay.

`/v1/chat/completions` and `/v1/messages` relay the client's body bytes unchanged (only
the key is swapped) and the upstream's bytes back unchanged. `/api/chat/stream` (in
`simple.py`) reuses every stage but the last, where it maps events instead of relaying.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from .admission.limiter import TenantLimits
from .auth import presented_key
from .config import Tenant, UpstreamSpec
from .dialects import ANTHROPIC, OPENAI, Dialect, Usage, UsageMeter
from .dialects.base import estimate_prompt_tokens
from .errors import BadRequest, GatewayError, Shed, UpstreamError
from .relay import HEARTBEAT, RelayTiming, relay_lines
from .sse import LineSplitter
from .state import (
    AUTH,
    CONFIG,
    FLIGHT,
    LIMITER,
    METRICS,
    QUEUE,
    ROUTER,
    UPSTREAMS,
    Flight,
)
from .upstream import Opened

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _pass_through(request, OPENAI)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _pass_through(request, ANTHROPIC)


async def models(request: web.Request) -> web.Response:
    tenant = authenticate(request)
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": upstream}
        for model, upstream in request.app[ROUTER].models_for(tenant)
    ]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def _pass_through(request: web.Request, dialect: Dialect) -> web.StreamResponse:
    flight: Flight = request[FLIGHT]
    tenant = authenticate(request)
    raw, body = await read_body(request)
    flight.model = body["model"]
    flight.stream = body.get("stream") is True
    chain = request.app[ROUTER].route(tenant, flight.model, dialect.name)
    async with admitted(request, flight, body):
        opened = await open_upstream(request, flight, chain, lambda _: raw)
        if not flight.stream:
            return _json_answer(request, flight, opened, dialect)
        return await stream_answer(request, flight, opened, dialect, _PassThrough)


# -- stages shared with simple.py ------------------------------------------------------------


def authenticate(request: web.Request) -> Tenant:
    tenant = request.app[AUTH].tenant_for(presented_key(request))
    request[FLIGHT].tenant = tenant
    return tenant


async def read_body(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    """The body bytes (relayed as they are) and their JSON, checked for what we rely on."""
    raw = await request.read()  # over client_max_size -> HTTPRequestEntityTooLarge (413)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("`model` is required and must be a non-empty string")
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("`messages` is required")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty array")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise BadRequest("each message must be an object with a string `role`")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise BadRequest("`stream` must be a boolean")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise BadRequest(f"`{key}` must be a positive integer")
    return raw, body


@asynccontextmanager
async def admitted(request: web.Request, flight: Flight, body: dict[str, Any]) -> AsyncIterator[None]:
    """Take from the tenant's buckets (and, for a stream, a slot); settle on the way out.

    Reservation = prompt estimate + `max_tokens` (or `server.default_max_tokens`); the
    settlement charges real usage (or what was received, for a stream cut short).
    """
    app = request.app
    tenant = flight.tenant
    assert tenant is not None
    limits = TenantLimits(tenant.name, tenant.requests_per_minute, tenant.tokens_per_minute)
    prompt = estimate_prompt_tokens(body)
    answer = body.get("max_tokens") or body.get("max_completion_tokens")
    reserve = prompt + (answer if isinstance(answer, int) else app[CONFIG].server.default_max_tokens)
    admission = await app[LIMITER].admit(limits, reserve)
    flight.ratelimit_headers = admission.quota.headers()
    flight.prompt_estimate = prompt
    try:
        if flight.stream:
            queue = app[QUEUE]
            loop = asyncio.get_running_loop()
            since = loop.time()
            try:
                flight.queue_wait = await queue.acquire(tenant.priority)
            finally:  # admitted, shed or gone: every wait is observed
                app[METRICS].queue_wait.observe(loop.time() - since)
            try:
                yield
            finally:
                queue.release()
        else:
            yield
    finally:
        # Only an upstream that answered costs tokens (`usage` is set once it did).
        used = flight.usage.total if flight.usage is not None else 0
        await app[LIMITER].settle(limits, admission.reserved_tokens, used)


async def open_upstream(
    request: web.Request, flight: Flight, chain: list[UpstreamSpec],
    body_for: Callable[[UpstreamSpec], bytes],
) -> Opened:
    heartbeat = request.app[CONFIG].server.heartbeat_seconds
    # A stream whose client has waited a heartbeat interval is handed over before its first
    # byte, so the client gets headers and heartbeats instead of silence (see upstream.py).
    commit_at = flight.started + heartbeat if flight.stream and heartbeat else None
    try:
        opened = await request.app[UPSTREAMS].open(
            chain, body_for, dict(request.headers), flight.request_id, stream=flight.stream,
            commit_at=commit_at)
    except UpstreamError as exc:
        flight.upstream = chain[-1].name
        flight.outcome = exc.outcome
        flight.retries = exc.retries
        raise
    flight.upstream = opened.upstream.name
    flight.retries = opened.retries
    flight.usage = Usage(prompt_tokens=flight.prompt_estimate)
    return opened


def _json_answer(request: web.Request, flight: Flight, opened: Opened, dialect: Dialect) -> web.Response:
    """Non-stream: the upstream's status, body and content type, as they are."""
    flight.ttfb = asyncio.get_running_loop().time() - flight.started
    try:
        found = dialect.usage_from_body(orjson.loads(opened.first))
    except (orjson.JSONDecodeError, AttributeError):
        found = None
    if found is not None:
        flight.usage = found
    response = opened.response
    content_type = response.headers.get("Content-Type", "application/json").split(";")[0]
    opened.response.release()
    return web.Response(status=response.status, body=opened.first, content_type=content_type)


class Sink:
    """Where the relay's bytes go: written as they are, or mapped (simple events)."""

    def __init__(self, response: web.StreamResponse, dialect: Dialect) -> None:
        self.response = response
        self.dialect = dialect

    async def lines(self, complete: bytes) -> None:
        raise NotImplementedError

    async def error(self, exc: GatewayError) -> None:
        raise NotImplementedError

    async def end(self) -> None:
        """The upstream ended cleanly."""


class _PassThrough(Sink):
    async def lines(self, complete: bytes) -> None:
        await self.response.write(complete)

    async def error(self, exc: GatewayError) -> None:
        await self.response.write(self.dialect.error_event(exc))


async def stream_answer(
    request: web.Request, flight: Flight, opened: Opened, dialect: Dialect,
    make_sink: Callable[[web.StreamResponse, Dialect], Sink],
) -> web.StreamResponse:
    """Prepare the SSE response and run the relay; failures after the first byte become one
    error event; a client that goes away ends it at once (the upstream is closed in `finally`)."""
    app = request.app
    config = app[CONFIG]
    loop = asyncio.get_running_loop()
    response = web.StreamResponse(headers={
        **SSE_HEADERS, "x-request-id": flight.request_id, **flight.ratelimit_headers})
    await response.prepare(request)
    sink = make_sink(response, dialect)
    upstream = opened.upstream
    meter = UsageMeter(dialect, flight.prompt_estimate)
    flight.usage = meter.usage
    flight.upstream_response = opened.response
    metrics = app[METRICS]

    async def write(complete: bytes) -> None:
        await sink.lines(complete)
        if flight.ttfb is None:
            flight.ttfb = loop.time() - flight.started

    async def heartbeat() -> None:
        await response.write(HEARTBEAT)
        metrics.heartbeats.inc()

    timing = RelayTiming(
        heartbeat=config.server.heartbeat_seconds,
        idle=upstream.idle_timeout_seconds,
        deadline=flight.started + upstream.total_timeout_seconds,
        first_byte=opened.first_byte_deadline,
    )
    clean = False
    try:
        try:
            if not opened.first:  # handed over before its first byte: the client has waited
                await heartbeat()
            await relay_lines(opened.response.content, write, opened.first,
                              LineSplitter(config.server.max_line_bytes), meter, timing, heartbeat)
            if flight.stopped:
                raise Shed(flight.stopped, reason="draining")
            await sink.end()
            clean = True
        except GatewayError as exc:
            if flight.stopped and not isinstance(exc, Shed):
                exc = Shed(flight.stopped, reason="draining")
            flight.outcome, flight.error = exc.outcome, exc.message
            if not flight.stopped:
                metrics.upstream_errors.labels(metrics.upstream(upstream.name), "midstream").inc()
            await sink.error(exc)
        await response.write_eof()
    except ConnectionResetError:
        flight.outcome = "client_disconnected"
        flight.status = 499
    finally:
        flight.upstream_response = None
        if clean:
            opened.response.release()
        else:
            opened.response.close()
    return response


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()

