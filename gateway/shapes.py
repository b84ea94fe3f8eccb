"""Error shapes: how a `GatewayError` is written on each route, as a JSON answer before a
stream starts and as one SSE event after it.

Three shapes: OpenAI `{"error": {"message", "type", "code"}}`, Anthropic
`{"type": "error", "error": {"type", "message"}}`, and the browser's simple events
(`event: error` `{"code", "message"}`). OpenAI's Responses API answers in OpenAI's shape, but
its error EVENT is its own (`RESPONSES_SHAPE`). Each dialect's wording is ONE table from an
error's `kind`; a new route picks a shape, a new dialect adds a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import GatewayError

OPENAI_TYPES = {
    "invalid_request": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "not_found": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "rate_limit": "rate_limit_error",
    "quota": "insufficient_quota",
    "overloaded": "server_error",
    "timeout": "server_error",
    "server": "server_error",
}
ANTHROPIC_TYPES = {
    "invalid_request": "invalid_request_error",
    "request_too_large": "request_too_large",
    "not_found": "not_found_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "rate_limit": "rate_limit_error",
    "quota": "rate_limit_error",
    "overloaded": "overloaded_error",
    "timeout": "api_error",
    "server": "api_error",
}


@dataclass(frozen=True, slots=True)
class ErrorShape:
    name: str  # "openai" | "anthropic" | "simple" | "responses"

    def body(self, exc: GatewayError) -> dict[str, Any]:
        """The JSON error object of this shape."""
        if self.name == "anthropic":
            kind = ANTHROPIC_TYPES.get(exc.kind, "api_error")
            return {"type": "error", "error": {"type": kind, "message": exc.message}}
        if self.name == "simple":
            return {"code": exc.status, "message": exc.message}
        return {"error": {"message": exc.message, "type": OPENAI_TYPES.get(exc.kind, "server_error"),
                          "code": exc.code}}

    def event(self, exc: GatewayError, sequence_number: int = 0) -> bytes:
        """One SSE error event, for failures once a stream has started. `sequence_number`:
        the Responses API numbers its events; the error's is one past the last one sent."""
        if self.name == "responses":
            return b"event: error\ndata: " + orjson.dumps(_responses_error(exc, sequence_number)) + b"\n\n"
        data = orjson.dumps(self.body(exc))
        if self.name == "openai":
            return b"data: " + data + b"\n\n"
        return b"event: error\ndata: " + data + b"\n\n"

    def answer(self, exc: GatewayError) -> tuple[bytes, str]:
        """A whole error answer before any byte was sent: (body, content type)."""
        if self.name == "simple":  # the browser's EventSource-style reader expects a stream
            return self.event(exc), "text/event-stream"
        return orjson.dumps(self.body(exc)), "application/json"


def _responses_error(exc: GatewayError, sequence_number: int) -> dict[str, Any]:
    """The Responses API's `error` stream event, with the fields its reference (and the SDK's
    `ResponseErrorEvent`) gives at the top level, plus the same error nested under `error`:
    that is how the live API sends it, and what makes the openai SDK raise `APIError` with
    the message (it reads `data["error"]`) rather than hand the event on as data."""
    error = {"type": OPENAI_TYPES.get(exc.kind, "server_error"), "code": exc.code,
             "message": exc.message, "param": None}
    return {"type": "error", "code": exc.code, "message": exc.message, "param": None,
            "sequence_number": sequence_number, "error": error}


OPENAI_SHAPE = ErrorShape("openai")
RESPONSES_SHAPE = ErrorShape("responses")  # OpenAI's answers, the Responses API's error event
ANTHROPIC_SHAPE = ErrorShape("anthropic")
SIMPLE_SHAPE = ErrorShape("simple")
