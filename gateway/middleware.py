"""Middlewares: the request id, the request's record (one log line + metrics at its end),
drain refusal, and the ONE place a `GatewayError` becomes a response in the route's dialect.
"""

from __future__ import annotations

import asyncio
import re
import traceback
import uuid
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from .dialects import ANTHROPIC, OPENAI, Dialect
from .errors import BodyTooLarge, GatewayError, RateLimited, Shed, UpstreamHTTPError
from .state import FLIGHT, LOGGER, METRICS, RUNTIME, Flight

#: Routes that get a Flight record (logged and counted); the rest are operational.
API_ROUTES = {
    "/v1/chat/completions": "chat_completions",
    "/v1/messages": "messages",
    "/v1/models": "models",
    "/api/chat/stream": "chat_stream",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def route_dialect(path: str) -> Dialect | None:
    """The dialect errors on `path` are written in (None: the simple-event shape)."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return ANTHROPIC
    if path == "/api/chat/stream":
        return None
    return OPENAI


def error_response(exc: GatewayError, path: str) -> web.Response:
    dialect = route_dialect(path)
    headers = dict(exc.headers)
    if isinstance(exc, RateLimited | Shed):
        headers.setdefault("Retry-After", str(max(1, round(exc.retry_after + 0.499))))
    if isinstance(exc, UpstreamHTTPError):
        return web.Response(
            status=exc.status, body=exc.body, headers=headers,
            content_type=exc.content_type.split(";")[0] or "application/json")
    if dialect is None:
        body = b"event: error\ndata: " + orjson.dumps(
            {"code": exc.status, "message": exc.message}) + b"\n\n"
        headers["Cache-Control"] = "no-cache"
        return web.Response(status=exc.status, body=body, headers=headers,
                            content_type="text/event-stream")
    return web.Response(status=exc.status, body=orjson.dumps(dialect.error_body(exc)),
                        headers=headers, content_type="application/json")


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    route = API_ROUTES.get(request.path)
    if route is None or request.method == "OPTIONS":  # CORS preflights are not API requests
        return await _operational(request, handler, request_id)
    app = request.app
    flight = Flight(request_id, route, asyncio.get_running_loop().time())
    request[FLIGHT] = flight
    runtime = app[RUNTIME]
    response: web.StreamResponse | None = None
    try:
        if runtime.draining:
            raise Shed("the gateway is shutting down", reason="draining", retry_after=5)
        runtime.add(flight)
        response = await handler(request)
        flight.status = flight.status or response.status
    except GatewayError as exc:
        response = error_response(exc, request.path)
        _note_error(request, flight, exc)
    except web.HTTPRequestEntityTooLarge as exc:
        response = error_response(BodyTooLarge(exc.text or "request body too large"), request.path)
        flight.status, flight.outcome = 413, "bad_request"
    except web.HTTPException as exc:  # the router's 405 and the like, in the route's shape
        if exc.status < 400:
            raise
        response = error_response(_http_error(exc), request.path)
        flight.status, flight.outcome = exc.status, "bad_request"
    except asyncio.CancelledError:
        flight.status, flight.outcome = 499, "client_disconnected"
        raise
    except Exception as exc:  # a bug: never a traceback to the client, always one log line
        # The exception's text may hold request data (a key, even): log its type and frames.
        flight.status, flight.outcome, flight.error = 500, "internal_error", type(exc).__name__
        app[LOGGER].error("unhandled", request_id=request_id, exception=type(exc).__name__,
                          traceback="".join(traceback.format_tb(exc.__traceback__)))
        response = error_response(GatewayError("internal error"), request.path)
    finally:
        runtime.discard(flight)
        _finish(request, flight)
    if not response.prepared:
        response.headers["x-request-id"] = request_id
        response.headers.update(flight.ratelimit_headers)
    return response


async def _operational(
    request: web.Request, handler: Handler, request_id: str
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith(("/v1/", "/api/")):
            # An unknown API path (an SDK call we don't serve): say so in the API's shape.
            error = _http_error(exc)
            response = error_response(error, request.path)
            response.headers["x-request-id"] = request_id
            return response
        exc.headers["x-request-id"] = request_id
        raise
    if not response.prepared:
        response.headers["x-request-id"] = request_id
    return response


def _http_error(exc: web.HTTPException) -> GatewayError:
    error = GatewayError(exc.reason)
    error.status, error.code, error.outcome = exc.status, "http_error", "bad_request"
    error.openai_type = "invalid_request_error"
    error.anthropic_type = "not_found_error" if exc.status == 404 else "invalid_request_error"
    error.headers.update({k: v for k, v in exc.headers.items() if k.lower() == "allow"})
    return error


def _note_error(request: web.Request, flight: Flight, exc: GatewayError) -> None:
    metrics = request.app[METRICS]
    flight.status, flight.outcome, flight.error = exc.status, exc.outcome, exc.message
    tenant = flight.tenant.name if flight.tenant else None
    if isinstance(exc, RateLimited):
        metrics.ratelimited.labels(metrics.tenant(tenant), exc.kind).inc()
    elif isinstance(exc, Shed):
        metrics.shed.labels(exc.reason).inc()


def _finish(request: web.Request, flight: Flight) -> None:
    """Count and log the request once, whatever way it ended."""
    app = request.app
    metrics = app[METRICS]
    tenant = metrics.tenant(flight.tenant.name if flight.tenant else None)
    model = metrics.model(flight.model)
    metrics.requests.labels(tenant, model, flight.route, str(flight.status)).inc()
    duration = asyncio.get_running_loop().time() - flight.started
    upstream = metrics.upstream(flight.upstream)
    usage = flight.usage
    if usage is not None:
        metrics.tokens.labels(tenant, model, "prompt").inc(usage.prompt_tokens)
        metrics.tokens.labels(tenant, model, "completion").inc(usage.completion_tokens)
    if flight.ttfb is not None:
        metrics.ttfb.labels(tenant, model, upstream).observe(flight.ttfb)
        if flight.stream:
            metrics.stream_duration.labels(tenant, model, upstream).observe(duration)
    if flight.outcome == "client_disconnected":
        metrics.client_disconnects.labels(tenant).inc()
    fields: dict[str, Any] = {
        "request_id": flight.request_id,
        "tenant": flight.tenant.name if flight.tenant else None,
        "route": flight.route,
        "model": flight.model,
        "upstream": flight.upstream,
        "stream": flight.stream,
        "status": flight.status,
        "outcome": flight.outcome,
        "ttfb_ms": round(flight.ttfb * 1000, 2) if flight.ttfb is not None else None,
        "duration_ms": round(duration * 1000, 2),
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "usage_reported": usage.reported if usage else False,
        "retries": flight.retries,
    }
    if flight.queue_wait is not None:
        fields["queue_wait_ms"] = round(flight.queue_wait * 1000, 2)
    if flight.error:
        fields["error"] = flight.error
    app[LOGGER].info("request", **fields)
