"""Answers from an Anthropic upstream for an OpenAI chat client: the stream, one upstream
event in and its chat-completion chunks out at once, and the non-stream body.

Rules:
- message_start -> the role chunk; text_delta -> a content chunk; a tool_use block start ->
  a tool_calls delta (index = 0-based count of tool calls, id, name, arguments "");
  input_json_delta -> an arguments fragment under the same index.
- Thinking is sent as `reasoning_content` deltas (as vLLM, DeepSeek and other OpenAI-compatible
  servers do); signatures, redacted thinking, citations and server-tool blocks have no chat
  counterpart and map to nothing.
- message_delta's stop_reason -> the finish chunk (see common.FINISH_REASONS); message_stop ->
  the usage chunk (`choices: []`, only with include_usage), then `data: [DONE]`.
- An `error` event (or an event that is not JSON) -> one `data: {"error": {...}}` and nothing
  after it; `ping` and event types this code does not know map to nothing.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..dialects import ANTHROPIC
from ..dialects.reader import NOT_JSON, StreamFailure, StreamReader
from ..errors import GatewayError
from ..shapes import OPENAI_TYPES
from .common import DONE, FINISH_REASONS, TokenUsage, openai_error, sse, usage_from_anthropic


class AnthropicToChat:
    """`feed(event, data) -> bytes`: one upstream Anthropic event in, OpenAI chunk bytes out."""

    def __init__(self, model: str, include_usage: bool, created: int, id: str) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = created
        self.id = id
        self.done = False  # [DONE] or an error event was emitted; nothing follows
        self.failure: str | None = None  # the upstream's error message, when it sent one
        self._read = StreamReader(ANTHROPIC)  # parse, the upstream's error event, usage
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._finished = False

    @property
    def usage(self) -> TokenUsage:
        return self._read.usage

    def feed(self, event: str, data: str) -> bytes:
        if self.done:
            return b""
        payload = self._read.read(event, data)
        if isinstance(payload, StreamFailure):
            self.failure = payload.message
            if payload.not_json:
                return self.error_event(502, "server_error", NOT_JSON, code="upstream_error")
            self.done = True
            return sse({"error": openai_error(payload.type, payload.message, 500)})
        kind = payload.get("type", event)
        if kind == "message_start":
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            return self._block_delta(payload)
        if kind == "message_delta":
            delta = payload.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if not isinstance(reason, str) or self._finished:
                return b""
            self._finished = True
            return self._chunk({}, FINISH_REASONS.get(reason, "stop"))
        if kind == "message_stop":
            out = b"" if self._finished else self._chunk({}, "stop")
            self._finished = self.done = True
            if self.include_usage:
                out += sse({**self._head(), "choices": [], "usage": self.usage.openai()})
            return out + DONE
        return b""  # ping, content_block_stop, and event types added later

    def gateway_error(self, exc: GatewayError) -> bytes:
        """A failure the gateway detected, as the OpenAI client's error chunk."""
        return self.error_event(exc.status, OPENAI_TYPES.get(exc.kind, "server_error"), exc.message,
                                code=exc.code)

    def error_event(self, status: int, type: str, message: str, code: str | None = None) -> bytes:
        """A failure the gateway detected mid-stream, as the chat client's error event.
        `type` is OpenAI's error.type; `code` defaults to the status."""
        if self.done:
            return b""
        self.done = True
        return sse({"error": {"message": message, "type": type, "param": None,
                              "code": code if code is not None else str(status)}})

    def _block_start(self, payload: dict[str, Any]) -> bytes:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            return b""
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return self._chunk({"content": block["text"]})
        if block.get("type") != "tool_use":
            return b""
        index = len(self._tools)
        self._tools[_int(payload.get("index"))] = index
        call = {"index": index, "id": str(block.get("id", "")), "type": "function",
                "function": {"name": str(block.get("name", "")), "arguments": ""}}
        return self._chunk({"tool_calls": [call]})

    def _block_delta(self, payload: dict[str, Any]) -> bytes:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return self._chunk({"content": text}) if isinstance(text, str) and text else b""
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return self._chunk({"reasoning_content": text}) if isinstance(text, str) and text else b""
        if kind == "input_json_delta":
            fragment = delta.get("partial_json")
            index = self._tools.get(_int(payload.get("index")))
            if index is None or not isinstance(fragment, str) or not fragment:
                return b""
            return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        return b""

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({**self._head(), "choices": [choice]})


def message_to_completion(body: dict[str, Any], model: str, created: int | None = None) -> dict[str, Any]:
    """An Anthropic `message` body -> a `chat.completion` body (thinking as `reasoning_content`)."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    content = body.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input", {})).decode()
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")), "arguments": arguments}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                               "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    reason = body.get("stop_reason")
    finish = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return {
        "id": str(body.get("id", "")),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_from_anthropic(body.get("usage"), TokenUsage()).openai(),
    }


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1
