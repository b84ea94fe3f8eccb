"""The middleware: the request id, the request's record (told once at the end), drain
refusal, and the ONE place a `GatewayError` before a stream becomes an answer, in the
shape of the route the request matched.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
import traceback

from aiohttp import web
from aiohttp.typedefs import Handler

from .body import ENCODINGS
from .errors import (
    BadRequest,
    BodyTooLarge,
    GatewayError,
    RateLimited,
    RouterRefused,
    Shed,
    UpstreamHTTPError,
)
from .header_names import COST_USD, REQUEST_ID, RETRY_AFTER
from .record import Record, tell
from .relay.early import with_anthropic_quota
from .routes import BY_NAME, shape_for
from .shapes import ANTHROPIC_SHAPE, ErrorShape
from .spend import micros_to_usd
from .state import CONFIG, LIVE, LOGGER, METRICS, RECORD, REQUEST_IDS, RUNTIME, TRACER
from .store.runtime import note_request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIds:
    """Request ids for requests that bring none: 32 hex digits like a uuid4's, a random
    per-process prefix (64 bits: unique across workers and restarts) and a counter. Ten
    times cheaper than `uuid4()` (a getrandom syscall and a UUID object per request)."""

    __slots__ = ("_prefix", "_count")

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"




def error_response(exc: GatewayError, shape: ErrorShape) -> web.Response:
    headers = dict(exc.headers)
    if isinstance(exc, RateLimited | Shed):
        headers.setdefault(RETRY_AFTER, str(max(1, round(exc.retry_after + 0.499))))
    if isinstance(exc, UpstreamHTTPError):
        return web.Response(
            status=exc.status, body=exc.body, headers=headers,
            content_type=exc.content_type.split(";")[0] or "application/json")
    body, content_type = shape.answer(exc)
    if content_type == "text/event-stream":
        headers["Cache-Control"] = "no-cache"
    return web.Response(status=exc.status, body=body, headers=headers, content_type=content_type)


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if incoming and _REQUEST_ID.match(incoming) else request.app[REQUEST_IDS].next()
    route = BY_NAME.get(request.match_info.route.name or "")
    if route is None or request.method == "OPTIONS":  # CORS preflights are not API requests
        return await _operational(request, handler, request_id)
    app = request.app
    record = Record(request_id, route.name, time.perf_counter(), asyncio.get_running_loop().time())
    request[RECORD] = record
    runtime = app[RUNTIME]
    response: web.StreamResponse | None = None
    runtime.enter()
    try:
        if runtime.draining:
            raise Shed("the gateway is shutting down", reason="draining", retry_after=5)
        _check_body_head(request)
        response = await handler(request)
        record.status = record.status or response.status
    except GatewayError as exc:
        response = error_response(exc, route.shape_of(request))
        _note_error(request, record, exc)
    except web.HTTPRequestEntityTooLarge as exc:
        response = error_response(BodyTooLarge(exc.text or "request body too large"), route.shape_of(request))
        record.status, record.outcome = 413, "bad_request"
    except web.HTTPException as exc:  # the router's 405 and the like, in the route's shape
        if exc.status < 400:
            raise
        response = error_response(_refused(exc), route.shape_of(request))
        record.status, record.outcome = exc.status, "bad_request"
    except asyncio.CancelledError:
        if not record.status:  # gone before its answer was whole (a finished one keeps its status)
            record.status, record.outcome = 499, "client_disconnected"
        raise
    except Exception as exc:  # a bug: never a traceback to the client, always one log line
        # The exception's text may hold request data (a key, even): log its type and frames.
        record.status, record.outcome, record.error = 500, "internal_error", type(exc).__name__
        app[LOGGER].error("unhandled", request_id=request_id, exception=type(exc).__name__,
                          traceback="".join(traceback.format_tb(exc.__traceback__)))
        response = error_response(GatewayError("internal error"), route.shape_of(request))
    finally:
        runtime.leave()
        tell(record, app[METRICS], app[LOGGER])
        note_request(app, record)  # its spend row (when the store is open)
        if (tracer := app.get(TRACER)) is not None:  # OpenTelemetry, when configured
            tracer.trace(record, request.headers, record.config or app[LIVE].current.config)
    if not response.prepared:
        headers = response.headers
        headers[REQUEST_ID] = request_id
        headers.update(record.headers)
        if record.cost_micros is not None:
            headers[COST_USD] = f"{micros_to_usd(record.cost_micros):.6f}"
        if route.shape is ANTHROPIC_SHAPE:  # a stream's response did it as it was made
            with_anthropic_quota(headers)
    return response


async def _operational(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    if request.path.startswith("/admin/"):
        return await _audited(request, handler, request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith(("/v1/", "/api/")):
            # An unknown API path or method (an SDK call we don't serve): say so in its shape.
            response = error_response(_refused(exc), shape_for(request.path))
            response.headers[REQUEST_ID] = request_id
            return response
        exc.headers[REQUEST_ID] = request_id
        raise
    if not response.prepared:
        response.headers[REQUEST_ID] = request_id
    return response


async def _audited(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    """The admin routes: one `admin` log line each (who asked what, and the answer), an audit
    trail of every attempt, refused ones included."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
    except web.HTTPException as exc:
        status = exc.status
        exc.headers[REQUEST_ID] = request_id
        raise
    except Exception as exc:  # a bug: as on the API routes, JSON to the client, frames to the log
        request.app[LOGGER].error("unhandled", request_id=request_id, exception=type(exc).__name__,
                                  traceback="".join(traceback.format_tb(exc.__traceback__)))
        response = web.json_response({"error": "internal error"}, status=500)
    finally:
        request.app[LOGGER].info("admin", request_id=request_id, method=request.method,
                                 path=request.path[:128], status=status, remote=request.remote)
    response.headers[REQUEST_ID] = request_id
    return response


def _check_body_head(request: web.Request) -> None:
    """Before any byte of the body is read: a declared length over the limit is a 413 at once
    (not a wait for bytes that will be refused), an unknown `Content-Encoding` a 400."""
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and (encoding := encoding.strip().lower()) not in ENCODINGS:
        # anything else is refused rather than read as identity
        raise BadRequest(f"unsupported Content-Encoding {encoding[:32]!r} (use gzip, deflate or none)")
    length = request.content_length
    if length is None:
        return
    limit = request.app[CONFIG].server.max_body_bytes  # read at start, as aiohttp's own cap
    if length > limit:
        raise BodyTooLarge(f"request body of {length} bytes is over the limit of {limit}")


def _refused(exc: web.HTTPException) -> GatewayError:
    allow = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return RouterRefused(exc.status, exc.reason, headers=allow)


def _note_error(request: web.Request, record: Record, exc: GatewayError) -> None:
    metrics = request.app[METRICS]
    record.status, record.outcome, record.error = exc.status, exc.outcome, exc.message
    tenant = record.tenant.name if record.tenant else None
    if isinstance(exc, RateLimited):
        metrics.ratelimited.labels(metrics.tenant(tenant), exc.bucket).inc()
    elif isinstance(exc, Shed):
        metrics.shed.labels(exc.reason).inc()
