"""The browser's simple events from an upstream stream of either dialect.

`event: message` `{"content": "...", "done": false}` per text delta, `event: done` `{}` at the
dialect's end marker (`[DONE]`, `message_stop`), `event: error` `{"code": N, "message": "..."}`
once for an upstream error event or an event that is not JSON; nothing follows done or error.
Only answer text is sent: thinking, tool calls and usage map to no simple event. The done data
carries `cost_usd` when the codec was given a `cost` and the upstream reported usage that it prices
(the same prices and rounding the request's log line uses); else it is `{}`. `SimpleSpot` reads
and continues such a stream for a mid-stream resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..dialects import DIALECTS, Dialect, Usage
from ..dialects.reader import NOT_JSON, StreamFailure, StreamReader
from ..dialects.spot import ClientSpot
from ..errors import GatewayError
from .common import TokenUsage, sse

#: `PriceTable.cost` bound to the answering model: (non-cached prompt, completion, cache read,
#: cache write) tokens -> USD, or None when the model is unpriced
Cost = Callable[[int, int, int, int], float | None]


class SimpleCodec:
    """`feed(event, data) -> bytes`: one upstream event in, simple-event bytes out."""

    def __init__(self, dialect: str, cost: Cost | None = None) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect: {dialect!r}")
        self.dialect = DIALECTS[dialect]  # reads the upstream's events: text, ends, errors
        self.done = False  # done or error was emitted; nothing follows
        self.failure: str | None = None  # why the stream failed, when the upstream said so
        self._read = StreamReader(self.dialect)  # parse, the upstream's error event, usage
        self._cost = cost

    @property
    def usage(self) -> TokenUsage:
        return self._read.usage

    def feed(self, event: str, data: str) -> bytes:
        if self.done:
            return b""
        dialect = self.dialect
        if dialect.is_final(event, data):
            self.done = True
            return sse(self._done_data(), "done")
        payload = self._read.read(event, data)  # the usage is for the done event's cost
        if isinstance(payload, StreamFailure):
            self.failure = payload.message
            if payload.not_json:
                return self.error_event(502, "api_error", NOT_JSON)
            return self.error_event(502, "api_error", f"upstream error: {payload.message}")
        if dialect.ends_answer(event, payload):
            self.done = True
            return sse(self._done_data(), "done")
        text = dialect.text_delta(event, payload)
        return sse({"content": text, "done": False}, "message") if text else b""

    def _done_data(self) -> dict[str, Any]:
        # Unreported usage is the meter's estimate, not a price the client should be shown.
        usage = self._read.usage
        if self._cost is None or not usage.reported:
            return {}
        cost = self._cost(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                          usage.cache_write_tokens)
        return {} if cost is None else {"cost_usd": cost}

    def gateway_error(self, exc: GatewayError) -> bytes:
        """A failure the gateway detected, as the simple `error` event."""
        return self.error_event(exc.status, exc.kind, exc.message)

    def error_event(self, status: int, type: str, message: str) -> bytes:
        """A failure as the simple `error` event (`type` has no place in it)."""
        if self.done:
            return b""
        self.done = True
        return sse({"code": status, "message": message}, "error")


class SimpleSpot(ClientSpot):
    """A simple-event client's stream, for a mid-stream resume: its text is the `message`
    events' content, `done` or `error` ends it; a continuation adds `message` events, then
    `done` `{}`."""

    def seen(self, event: str, data: dict[str, Any]) -> str | None:
        if event == "message" and isinstance(data.get("content"), str):
            return str(data["content"])
        if event in ("done", "error"):
            self.finished = True
        return None

    def more_text(self, text: str) -> bytes:
        return sse({"content": text, "done": False}, "message")

    def ending(self, stop: str | None, source: Dialect, usage: Usage, text: str) -> bytes:
        return sse({}, "done")
