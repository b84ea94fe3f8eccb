"""How the mock's answers look on the wire: each API's JSON shapes, stream steps and SSE framing.

Pure functions and data, no I/O; `server` decides when and how the bytes go out.
The chat shapes (OpenAI chat completions, Anthropic messages) live here; the Responses
API is in `responses`, legacy completions in `extra`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Literal, Protocol

import orjson
from aiohttp import web

from .answers import Answer, Conversation, answer_words

__all__ = ["ANTHROPIC_SHAPE", "OPENAI_SHAPE", "AnthropicShape", "OpenAIShape", "Shape", "answer_words"]

Event = tuple[str | None, Any]  # (SSE event name, JSON payload or raw bytes)
# A stream is a list of steps. Faults count `content` steps (one word or one tool-argument
# fragment each); `end` is the stream's end marker, which the `noend` fault leaves out.
Kind = Literal["meta", "content", "end"]
Step = tuple[Event, Kind]


class Shape(Protocol):
    id_prefix: str

    def api_key(self, request: web.Request) -> str | None: ...
    def error(self, status: int, message: str) -> dict[str, Any]: ...
    def context_overflow(self) -> dict[str, Any]: ...
    def content_filtered(self) -> dict[str, Any]: ...
    def max_tokens(self, body: dict[str, Any]) -> Any: ...
    def read(self, body: dict[str, Any]) -> Conversation | str: ...  # str: why it is a 400
    def completion(self, a: Answer) -> dict[str, Any]: ...
    def stream(self, a: Answer) -> Iterator[Step]: ...


def messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    if not all(isinstance(m, dict) for m in messages):
        return "each message must be an object"
    return None


_OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class OpenAIShape:
    """`/v1/chat/completions`; its errors and key header serve every OpenAI endpoint."""

    id_prefix = "chatcmpl-mock"

    def api_key(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return key if scheme.lower() == "bearer" else None

    def error(self, status: int, message: str, code: str | None = None) -> dict[str, Any]:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        code = code or _OPENAI_CODES.get(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def context_overflow(self) -> dict[str, Any]:
        message = (
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 250000 tokens. Please reduce the length of the messages."
        )
        body = self.error(400, message, "context_length_exceeded")
        body["error"]["param"] = "messages"
        return body

    def content_filtered(self) -> dict[str, Any]:
        message = (
            "The response was filtered due to the prompt triggering the content management "
            "policy. Please modify your prompt and retry."
        )
        body = self.error(400, message, "content_filter")
        body["error"]["param"] = "prompt"
        return body

    def max_tokens(self, body: dict[str, Any]) -> Any:
        return body.get("max_completion_tokens", body.get("max_tokens"))

    def read(self, body: dict[str, Any]) -> Conversation | str:
        messages: Any = body.get("messages")
        problem = messages_problem(messages)
        return problem if problem is not None else Conversation(messages, None, body.get("tools"))

    def _chunk(self, a: Answer, delta: dict[str, Any], finish: str | None) -> Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return None, {
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "choices": [choice],
        }

    def usage(self, a: Answer) -> dict[str, int]:
        n = a.completion_tokens
        return {"prompt_tokens": a.prompt_tokens, "completion_tokens": n, "total_tokens": a.prompt_tokens + n}

    def finish_reason(self, a: Answer) -> str:
        return "tool_calls" if a.tool_calls else "length" if a.capped else "stop"

    def completion(self, a: Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": a.text, "refusal": None}
        if a.tool_calls:
            message["content"] = a.text or None
            message["tool_calls"] = [
                {
                    "id": f"call_{c.key}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in a.tool_calls
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason(a)}
        return {
            "id": a.id,
            "object": "chat.completion",
            "created": a.created,
            "model": a.model,
            "choices": [choice],
            "usage": self.usage(a),
        }

    def stream(self, a: Answer) -> Iterator[Step]:
        if a.pieces or not a.tool_calls:
            yield self._chunk(a, {"role": "assistant", "content": ""}, None), "meta"
            for piece in a.pieces:
                yield self._chunk(a, {"content": piece}, None), "content"
        for i, call in enumerate(a.tool_calls):
            # The first delta of a call carries index, id, type and name; the rest only
            # index and an arguments fragment. A call with no text before it opens the message.
            function = {"name": call.name, "arguments": ""}
            delta: dict[str, Any] = {
                "tool_calls": [
                    {"index": i, "id": f"call_{call.key}", "type": "function", "function": function}
                ]
            }
            if i == 0 and not a.pieces:
                delta = {"role": "assistant", "content": None, **delta}
            yield self._chunk(a, delta, None), "meta"
            for fragment in call.fragments():
                part = {"tool_calls": [{"index": i, "function": {"arguments": fragment}}]}
                yield self._chunk(a, part, None), "content"
        yield self._chunk(a, {}, self.finish_reason(a)), "meta"
        if a.include_usage:
            _, usage_chunk = self._chunk(a, {}, None)
            usage_chunk.update(choices=[], usage=self.usage(a))
            yield (None, usage_chunk), "meta"
        yield (None, b"[DONE]"), "end"


class AnthropicShape:
    """`/v1/messages`."""

    id_prefix = "msg_mock"

    def api_key(self, request: web.Request) -> str | None:
        # Anthropic's own header; recent SDKs send `Authorization: Bearer` instead.
        return request.headers.get("x-api-key") or OPENAI_SHAPE.api_key(request)

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def context_overflow(self) -> dict[str, Any]:
        return self.error(400, "prompt is too long: 250000 tokens > 200000 maximum")

    def content_filtered(self) -> dict[str, Any]:
        message = "Output blocked by content filtering policy: the request violates the usage policy."
        return self.error(400, message)

    def max_tokens(self, body: dict[str, Any]) -> Any:
        return body.get("max_tokens")

    def read(self, body: dict[str, Any]) -> Conversation | str:
        messages: Any = body.get("messages")
        problem = messages_problem(messages)
        return (
            problem if problem is not None else Conversation(messages, body.get("system"), body.get("tools"))
        )

    def stop_reason(self, a: Answer) -> str:
        return "tool_use" if a.tool_calls else "max_tokens" if a.capped else "end_turn"

    def completion(self, a: Answer) -> dict[str, Any]:
        content: list[dict[str, Any]] = (
            [{"type": "text", "text": a.text}] if a.pieces or not a.tool_calls else []
        )
        content += [
            {"type": "tool_use", "id": f"toolu_{c.key}", "name": c.name, "input": orjson.loads(c.arguments)}
            for c in a.tool_calls
        ]
        return {
            "id": a.id,
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": content,
            "stop_reason": self.stop_reason(a),
            "stop_sequence": None,
            "usage": {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens},
        }

    def _block(self, index: int, kind: str, body: dict[str, Any]) -> Step:
        return (kind, {"type": kind, "index": index, **body}), "meta"

    def _json_delta(self, index: int, partial: str) -> Event:
        delta = {"type": "input_json_delta", "partial_json": partial}
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}

    def stream(self, a: Answer) -> Iterator[Step]:
        message = {**self.completion(a), "content": [], "stop_reason": None}
        message["usage"] = {"input_tokens": a.prompt_tokens, "output_tokens": 1}
        yield ("message_start", {"type": "message_start", "message": message}), "meta"
        index = itertools.count()
        if a.pieces or not a.tool_calls:
            i = next(index)
            yield self._block(i, "content_block_start", {"content_block": {"type": "text", "text": ""}})
            yield ("ping", {"type": "ping"}), "meta"
            for piece in a.pieces:
                delta = {"type": "text_delta", "text": piece}
                yield (
                    ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
                    "content",
                )
            yield self._block(i, "content_block_stop", {})
        for call in a.tool_calls:
            i = next(index)
            block = {"type": "tool_use", "id": f"toolu_{call.key}", "name": call.name, "input": {}}
            yield self._block(i, "content_block_start", {"content_block": block})
            if i == 0:
                yield ("ping", {"type": "ping"}), "meta"
            # Anthropic opens every tool_use block with an empty partial_json.
            yield self._json_delta(i, ""), "meta"
            for fragment in call.fragments():
                yield self._json_delta(i, fragment), "content"
            yield self._block(i, "content_block_stop", {})
        stop = {"stop_reason": self.stop_reason(a), "stop_sequence": None}
        usage = {"output_tokens": a.completion_tokens}
        yield ("message_delta", {"type": "message_delta", "delta": stop, "usage": usage}), "meta"
        yield ("message_stop", {"type": "message_stop"}), "end"


OPENAI_SHAPE, ANTHROPIC_SHAPE = OpenAIShape(), AnthropicShape()


# --- wire format -------------------------------------------------------------------------


def frame(event: Event, nl: bytes = b"\n", multiline: bool = False) -> bytes:
    """One SSE event: optional `event:` line, one `data:` line per payload line, blank line.

    `multiline` pretty-prints the JSON so its payload spans several `data:` lines; an SSE
    client joins them with "\n", which JSON allows between tokens.
    """
    name, payload = event
    if isinstance(payload, bytes):
        data = payload
    else:
        data = orjson.dumps(payload, option=orjson.OPT_INDENT_2 if multiline else 0)
    lines = [b"event: " + name.encode()] if name else []
    lines += [b"data: " + line for line in data.split(b"\n")]
    return nl.join(lines) + nl + nl


def fragments(data: bytes) -> Iterator[bytes]:
    """Deterministic 1, 2, 3, 1, 2, 3... byte pieces of `data`."""
    pos = 0
    for size in itertools.cycle((1, 2, 3)):
        if pos >= len(data):
            return
        yield data[pos : pos + size]
        pos += size
