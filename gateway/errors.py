"""The gateway's own exceptions: what went wrong, in domain words, with its HTTP status.

Library exceptions (aiohttp, asyncio, redis) are converted into these where they cross
into our code. Nothing here knows a dialect: `shapes.py` maps each error's `kind` to the
wording of the route's error shape, in ONE place (the middleware) for answers before the
stream, and in the sink for the one error event after it.
"""

from __future__ import annotations

import math


class GatewayError(Exception):
    """Base: an error with a status, a machine code, a kind and a client-safe message."""

    status: int = 500
    code: str = "internal_error"
    #: what sort of failure, for the error shapes' tables (see `shapes.py`)
    kind: str = "server"
    #: the outcome written to the request's log line
    outcome: str = "error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class BadRequest(GatewayError):
    status = 400
    code = "invalid_request"
    kind = "invalid_request"
    outcome = "bad_request"


class BodyTooLarge(BadRequest):
    status = 413
    code = "request_too_large"
    kind = "request_too_large"


class RouterRefused(BadRequest):
    """The HTTP router's own 4xx (404 unknown path, 405 wrong method), in the route's shape."""

    code = "http_error"

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.kind = "not_found" if status == 404 else "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    code = "invalid_api_key"
    kind = "authentication"
    outcome = "unauthorized"


class ModelNotFound(GatewayError):
    status = 404
    code = "model_not_found"
    kind = "not_found"
    outcome = "model_not_found"


class ModelUnpriced(GatewayError):
    """A tenant with a spend budget asked for a model that has no price: the budget could not
    be enforced on it (403, before any upstream is asked)."""

    status = 403
    code = "model_unpriced"
    kind = "permission"
    outcome = "model_unpriced"


class RateLimited(GatewayError):
    """A tenant bucket (`bucket` = "requests" or "tokens") cannot admit the request."""

    status = 429
    code = "rate_limit_exceeded"
    kind = "rate_limit"
    outcome = "ratelimited"

    def __init__(
        self, message: str, *, bucket: str, retry_after: float, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, headers=headers)
        self.bucket = bucket
        self.retry_after = retry_after


class BudgetExceeded(GatewayError):
    """The request's worst-case cost does not fit in what remains of the tenant's budget (429).

    `retry_after` is the seconds until the period resets (None for a "total" budget, which
    never does); the `Retry-After` header is set from it, rounded up.
    """

    status = 429
    code = "insufficient_quota"
    kind = "quota"
    outcome = "over_budget"

    def __init__(self, message: str, *, tenant: str, retry_after: float | None) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
        super().__init__(message, headers=headers)
        self.tenant = tenant
        self.retry_after = retry_after


class Shed(GatewayError):
    """Refused to protect the gateway: queue full, queue wait too long, draining, limiter down."""

    status = 503
    code = "overloaded"
    kind = "overloaded"
    outcome = "shed"

    def __init__(
        self, message: str, *, reason: str, retry_after: float = 1.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, headers=headers)
        self.reason = reason
        self.retry_after = retry_after


class UpstreamError(GatewayError):
    """The upstream could not be reached or failed (502)."""

    status = 502
    code = "upstream_error"
    outcome = "upstream_error"
    retries = 0  # attempts retried before giving up (for the log line)


class UpstreamTimeout(UpstreamError):
    """No first byte from the upstream in time (504), or idle/total timeout mid-stream."""

    status = 504
    code = "upstream_timeout"
    kind = "timeout"
    outcome = "upstream_timeout"


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with a status we pass through as is (4xx)."""

    outcome = "upstream_status"

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body
        self.content_type = content_type


class UpstreamAnswered(GatewayError):
    """An upstream 4xx told in a shape of the gateway's own (the browser's simple events),
    where the provider's body can't be passed through: its status and message."""

    outcome = "upstream_status"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = {401: "authentication", 404: "not_found", 429: "rate_limit"}.get(
            status, "invalid_request")


class LineTooLong(UpstreamError):
    """An upstream SSE line grew past `max_line_bytes` without ending."""

    code = "upstream_line_too_long"


class ClientGone(GatewayError):
    """The client went away (reset, or stopped reading past the deadline)."""

    status = 499
    code = "client_disconnected"
    outcome = "client_disconnected"


class ConfigError(Exception):
    """A bad configuration: the message is one line naming the file, the key and the problem."""
