"""Answers from an OpenAI chat upstream for an Anthropic Messages client: the stream, one
upstream chunk in and its Anthropic events out at once, and the non-stream body.

Rules:
- The first chunk of any kind opens the message (`message_start`, input_tokens 0 unless that
  chunk carries usage: OpenAI reports usage only at the end).
- Only choice 0 is translated (Anthropic has no `n`). `content` -> a text block,
  `reasoning_content` (or `reasoning`) -> a thinking block with an empty signature, a tool call
  index not seen before -> a new tool_use block; opening a block closes the open one first.
  Arguments fragments -> input_json_delta in their call's block, also if that block was
  closed (OpenAI never interleaves calls, so this only keeps a broken upstream's bytes).
- finish_reason -> content_block_stop of the open block (the stop reason is kept); then the
  usage chunk (with include_usage) updates usage; `[DONE]` -> message_delta (stop_reason mapped
  back, see common.STOP_REASONS, output_tokens) + message_stop.
- An error chunk `{"error": ...}` (or an event that is not JSON) -> one `event: error`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..dialects import OPENAI
from ..dialects.reader import StreamFailure, StreamReader
from ..errors import GatewayError
from ..shapes import ANTHROPIC_TYPES
from .common import (
    NOT_JSON,
    STOP_REASONS,
    TokenUsage,
    anthropic_error_type,
    choice_zero,
    sse,
    usage_from_openai,
)


class ChatToAnthropic:
    """`feed(event, data) -> bytes`: one upstream chat chunk in, Anthropic event bytes out."""

    def __init__(self, model: str, id: str) -> None:
        self.model = model
        self.id = id
        self.done = False  # message_stop or an error event was emitted; nothing follows
        self.failure: str | None = None  # the upstream's error message, when it sent one
        self._read = StreamReader(OPENAI)  # parse, the upstream's error chunk, usage
        self._started = False
        self._blocks = 0  # Anthropic content blocks opened so far
        self._open: tuple[str, int] | None = None  # ("text" | "thinking" | "tool:<i>", block index)
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> Anthropic block index
        self._stop_reason: str | None = None

    @property
    def usage(self) -> TokenUsage:
        return self._read.usage

    def feed(self, event: str, data: str) -> bytes:
        if self.done:
            return b""
        if data.strip() == "[DONE]":
            out = self._start({}) + self._close()
            self.done = True
            delta: dict[str, Any] = {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}
            usage = self.usage.anthropic()
            return (out + sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
                    + sse({"type": "message_stop"}, "message_stop"))
        chunk = self._read.read(event, data)
        if isinstance(chunk, StreamFailure):
            self.failure = chunk.message
            if chunk.not_json:
                return self.error_event(502, "api_error", NOT_JSON)
            return self.error_event(500, anthropic_error_type(chunk.type, chunk.code, 500), chunk.message)
        out = self._start(chunk)
        choice = choice_zero(chunk.get("choices"))
        if choice is None:
            return out
        change = choice.get("delta")
        if isinstance(change, dict):
            out += self._delta(change)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and self._stop_reason is None:
            self._stop_reason = STOP_REASONS.get(reason, "end_turn")
            out += self._close()
        return out

    def gateway_error(self, exc: GatewayError) -> bytes:
        """A failure the gateway detected, as the Anthropic client's error event."""
        return self.error_event(exc.status, ANTHROPIC_TYPES.get(exc.kind, "api_error"), exc.message)

    def error_event(self, status: int, type: str, message: str) -> bytes:
        """A failure mid-stream as the Anthropic client's error event (`type` is Anthropic's)."""
        if self.done:
            return b""
        self.done = True
        return sse({"type": "error", "error": {"type": type, "message": message}}, "error")

    def _start(self, chunk: dict[str, Any]) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {**self.usage.anthropic(), "output_tokens": 0}}
        return sse({"type": "message_start", "message": message}, "message_start")

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = b""
        reasoning = delta.get("reasoning_content", delta.get("reasoning"))
        if isinstance(reasoning, str) and reasoning:
            out += self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._block_delta({"type": "thinking_delta", "thinking": reasoning})
        content = delta.get("content")
        if isinstance(content, str) and content:
            out += self._block("text", {"type": "text", "text": ""})
            out += self._block_delta({"type": "text_delta", "text": content})
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else []):
            if isinstance(call, dict):
                out += self._tool_call(call, position)
        return out

    def _tool_call(self, call: dict[str, Any], position: int) -> bytes:
        index = call["index"] if isinstance(call.get("index"), int) else position
        found = call.get("function")
        function: dict[str, Any] = found if isinstance(found, dict) else {}
        out = b""
        if index not in self._tools:
            call_id = call.get("id") if isinstance(call.get("id"), str) else f"toolu_{self.id}_{index}"
            name = function.get("name") if isinstance(function.get("name"), str) else ""
            block: dict[str, Any] = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            out += self._block(f"tool:{index}", block)
            self._tools[index] = self._blocks - 1
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            out += sse({"type": "content_block_delta", "index": self._tools[index], "delta": delta},
                       "content_block_delta")
        return out

    def _block(self, kind: str, block: dict[str, Any]) -> bytes:
        """Open a block of `kind` unless it is the open one (closing the open one first)."""
        if self._open is not None and self._open[0] == kind:
            return b""
        out = self._close()
        self._open = (kind, self._blocks)
        self._blocks += 1
        return out + sse({"type": "content_block_start", "index": self._open[1], "content_block": block},
                         "content_block_start")

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        assert self._open is not None  # _block opened one
        return sse({"type": "content_block_delta", "index": self._open[1], "delta": delta},
                   "content_block_delta")

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open[1], None
        return sse({"type": "content_block_stop", "index": index}, "content_block_stop")


def completion_to_message(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A `chat.completion` body (choice 0) -> an Anthropic `message` body."""
    choice = choice_zero(body.get("choices")) or {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except (orjson.JSONDecodeError, TypeError):
            arguments = {}
        content.append({"type": "tool_use", "id": str(call.get("id", "")),
                        "name": str(function.get("name", "")),
                        "input": arguments if isinstance(arguments, dict) else {}})
    reason = choice.get("finish_reason")
    return {
        "id": str(body.get("id", "")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(reason, "end_turn") if isinstance(reason, str) else "end_turn",
        "stop_sequence": None,
        "usage": usage_from_openai(body.get("usage"), TokenUsage()).anthropic(),
    }
