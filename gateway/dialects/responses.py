"""OpenAI's Responses API as a dialect: usage is `input_tokens`/`output_tokens`, in the body
or in the final `response.*` event's `response`; a stream ends at `response.completed`,
`response.failed` or `response.incomplete`, and its error event is `event: error` (the
gateway's own error event in its shape is `shapes.RESPONSES_SHAPE`); a continuation's text
is its `response.output_text.delta` events. Everything else (key, model list) is OpenAI's.
Only `/v1/responses` speaks it: it is no upstream dialect of the config."""

from __future__ import annotations

from typing import Any

from ..markers import Marker
from .base import Usage
from .openai import OpenAIDialect

#: A Responses stream ends at one of these events (an `event:` line, or a `data:` line that
#: names its type first); its error event is `event: error`. On line starts only.
RESPONSES_ENDS = tuple(
    marker for kind in (b"response.completed", b"response.failed", b"response.incomplete")
    for marker in (Marker(b"event: " + kind), Marker(b"event:" + kind),
                   Marker(b'data: {"type":"' + kind + b'"', whole=False)))
RESPONSES_ERRORS = (Marker(b"event: error"), Marker(b"event:error"),
                    Marker(b'data: {"type":"error"', whole=False))


class ResponsesDialect(OpenAIDialect):
    # `name` stays "openai": the upstreams that serve the Responses API are OpenAI-dialect ones.
    end_markers = RESPONSES_ENDS
    error_markers = RESPONSES_ERRORS

    def usage_from_body(self, body: dict[str, Any]) -> Usage | None:
        usage = body.get("usage")
        if not isinstance(usage, dict):
            return None
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")), True)

    def update_usage(self, usage: Usage, data: dict[str, Any]) -> None:
        answer = data.get("response")
        found = self.usage_from_body(answer) if isinstance(answer, dict) else None
        if found is not None:
            usage.prompt_tokens, usage.completion_tokens = found.prompt_tokens, found.completion_tokens
            usage.reported = True


    # A continuation's events (a mid-stream resume of `/v1/responses`) are read with these.
    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        if (data.get("type") or event) != "response.output_text.delta":
            return None
        delta = data.get("delta")
        return delta if isinstance(delta, str) and delta else None

    def is_final(self, event: str, data: str) -> bool:
        return event in _FINAL

    def ends_answer(self, event: str, data: dict[str, Any]) -> bool:
        return (data.get("type") or event) in _FINAL

    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        if event == "error" or data.get("type") == "error":
            error = data.get("error")
            message = error.get("message") if isinstance(error, dict) else data.get("message")
            return str(message or "upstream error")
        return None

    def finish_reason(self, data: dict[str, Any]) -> str | None:
        return None  # a Responses stream has no finish before its end event


_FINAL = ("response.completed", "response.failed", "response.incomplete")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


RESPONSES = ResponsesDialect()
