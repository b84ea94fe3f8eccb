"""The browser's simple events from an upstream stream of either dialect.

`event: message` `{"content": "...", "done": false}` per text delta, `event: done` `{}` at the
dialect's end marker (`[DONE]`, `message_stop`), `event: error` `{"code": N, "message": "..."}`
once for an upstream error event or an event that is not JSON; nothing follows done or error.
Only answer text is sent: thinking, tool calls and usage map to no simple event. The done data
carries `cost_usd` when the codec was given a `cost` and the upstream reported usage that it prices
(the same prices and rounding the request's log line uses); else it is `{}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .common import (
    NOT_JSON,
    TokenUsage,
    choice_zero,
    error_message,
    load_object,
    sse,
    usage_from_anthropic,
    usage_from_openai,
)

#: `PriceTable.cost` bound to the answering model: (non-cached prompt, completion, cache read,
#: cache write) tokens -> USD, or None when the model is unpriced
Cost = Callable[[int, int, int, int], float | None]


class SimpleCodec:
    """`feed(event, data) -> bytes`: one upstream event in, simple-event bytes out."""

    def __init__(self, dialect: str, cost: Cost | None = None) -> None:
        if dialect not in ("openai", "anthropic"):
            raise ValueError(f"unknown dialect: {dialect!r}")
        self.dialect = dialect
        self.done = False  # done or error was emitted; nothing follows
        self.failure: str | None = None  # why the stream failed, when the upstream said so
        self._usage = TokenUsage()
        self._cost = cost

    @property
    def usage(self) -> TokenUsage:
        return self._usage

    def feed(self, event: str, data: str) -> bytes:
        if self.done:
            return b""
        if self.dialect == "openai" and data.strip() == "[DONE]":
            self.done = True
            return sse(self._done_data(), "done")
        payload = load_object(data)
        if payload is None:
            self.failure = NOT_JSON
            return self.error_event(502, "api_error", NOT_JSON)
        if self.dialect == "anthropic" and (event == "message_stop" or payload.get("type") == "message_stop"):
            self.done = True
            return sse(self._done_data(), "done")
        failed = self._error(event, payload)
        if failed is not None:
            self.failure = failed
            return self.error_event(502, "api_error", f"upstream error: {failed}")
        text = self._text(payload)
        return sse({"content": text, "done": False}, "message") if text else b""

    def _done_data(self) -> dict[str, Any]:
        # Unreported usage is the meter's estimate, not a price the client should be shown.
        usage = self._usage
        if self._cost is None or not usage.reported:
            return {}
        cost = self._cost(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                          usage.cache_write_tokens)
        return {} if cost is None else {"cost_usd": cost}

    def error_event(self, status: int, type: str, message: str) -> bytes:
        """A failure as the simple `error` event (`type` has no place in it)."""
        if self.done:
            return b""
        self.done = True
        return sse({"code": status, "message": message}, "error")

    def _error(self, event: str, payload: dict[str, Any]) -> str | None:
        if self.dialect == "openai":
            error = payload.get("error")
            return None if error is None else error_message(error, "upstream error")
        if event == "error" or payload.get("type") == "error":
            return error_message(payload.get("error"), "upstream error")
        return None

    def _text(self, payload: dict[str, Any]) -> str | None:
        if self.dialect == "openai":
            if payload.get("usage") is not None:
                self._usage = usage_from_openai(payload["usage"], self._usage)
            choice = choice_zero(payload.get("choices"))
            delta = choice.get("delta") if choice is not None else None
            text = delta.get("content") if isinstance(delta, dict) else None
            return text if isinstance(text, str) else None
        kind = payload.get("type")
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            self._usage = usage_from_anthropic(payload["message"].get("usage"), self._usage)
        elif kind == "message_delta":
            self._usage = usage_from_anthropic(payload.get("usage"), self._usage)
        elif kind == "content_block_delta" and isinstance(payload.get("delta"), dict):
            delta = payload["delta"]
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                return str(delta["text"])
        return None
