"""The gateway's own exceptions: what went wrong, in domain words, with its HTTP status.

Library exceptions (aiohttp, asyncio, redis) are converted into these where they
cross into our code; one place (`app.error_middleware` via `dialects`) turns
them into a response in the route's dialect.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base: an error with a status, a machine code and a client-safe message."""

    status: int = 500
    code: str = "internal_error"
    #: OpenAI `error.type` / Anthropic `error.type`
    openai_type: str = "server_error"
    anthropic_type: str = "api_error"
    #: the outcome written to the request's log line
    outcome: str = "error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class BadRequest(GatewayError):
    status = 400
    code = "invalid_request"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    outcome = "bad_request"


class BodyTooLarge(BadRequest):
    status = 413
    code = "request_too_large"
    anthropic_type = "request_too_large"


class Unauthorized(GatewayError):
    status = 401
    code = "invalid_api_key"
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"
    outcome = "unauthorized"


class ModelNotFound(GatewayError):
    status = 404
    code = "model_not_found"
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    outcome = "model_not_found"


class RateLimited(GatewayError):
    """A tenant bucket (`kind` = "requests" or "tokens") cannot admit the request."""

    status = 429
    code = "rate_limit_exceeded"
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    outcome = "ratelimited"

    def __init__(
        self, message: str, *, kind: str, retry_after: float, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, headers=headers)
        self.kind = kind
        self.retry_after = retry_after


class Shed(GatewayError):
    """Refused to protect the gateway: queue full, queue wait too long, draining, limiter down."""

    status = 503
    code = "overloaded"
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
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
    openai_type = "server_error"
    anthropic_type = "api_error"
    outcome = "upstream_error"
    retries = 0  # attempts retried before giving up (for the log line)


class UpstreamTimeout(UpstreamError):
    """No first byte from the upstream in time (504), or idle/total timeout mid-stream."""

    status = 504
    code = "upstream_timeout"
    outcome = "upstream_timeout"


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with a status we pass through as is (4xx)."""

    outcome = "upstream_status"

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body
        self.content_type = content_type


class LineTooLong(UpstreamError):
    """An upstream SSE line grew past `max_line_bytes` without ending."""

    code = "upstream_line_too_long"


class ConfigError(Exception):
    """A bad configuration: the message is one line naming the file, the key and the problem."""
