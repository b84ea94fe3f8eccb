"""What the mock answers: deterministic words, each dialect's JSON shapes, and SSE framing.

Pure functions and data, no I/O; `server` decides when and how the bytes go out.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

# 32 words, so one sha256 byte picks one word without bias
VOCABULARY = tuple(
    "the quick brown fox jumps over a lazy dog while streams of tokens flow through the gateway "
    "relay lines bytes and events arrive quietly fast under load every single time with care".split()
)

Event = tuple[str | None, Any]  # (SSE event name, JSON payload or raw bytes)


# --- answers -----------------------------------------------------------------------------


def _text(content: Any) -> str:
    """A message's text: a string, or the `text` of its content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def answer_words(prompt: str, count: int) -> list[str]:
    """`count` words chosen by sha256 of the prompt: same prompt, same answer."""
    words: list[str] = []
    digest = hashlib.sha256(prompt.encode()).digest()
    for i in range(count):
        if i and i % len(digest) == 0:
            digest = hashlib.sha256(digest).digest()
        words.append(VOCABULARY[digest[i % len(digest)] % len(VOCABULARY)])
    return words


@dataclass(frozen=True)
class Answer:
    id: str
    model: str
    created: int
    words: list[str]
    prompt_tokens: int
    capped: bool  # max_tokens cut the answer short
    include_usage: bool

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def pieces(self) -> Iterator[str]:
        """One piece per content chunk: the word, with a leading space except the first."""
        for i, word in enumerate(self.words):
            yield word if i == 0 else " " + word


# --- dialects ----------------------------------------------------------------------------


class Dialect(Protocol):
    def api_key(self, request: web.Request) -> str | None: ...
    def error(self, status: int, message: str) -> dict[str, Any]: ...
    def max_tokens(self, body: dict[str, Any]) -> Any: ...
    def completion(self, a: Answer) -> dict[str, Any]: ...
    def head(self, a: Answer) -> list[Event]: ...
    def content(self, a: Answer, text: str) -> Event: ...
    def tail(self, a: Answer) -> list[Event]: ...


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


class OpenAIDialect:
    def api_key(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return key if scheme.lower() == "bearer" else None

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        code = _OPENAI_CODES.get(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def max_tokens(self, body: dict[str, Any]) -> Any:
        return body.get("max_completion_tokens", body.get("max_tokens"))

    def _chunk(self, a: Answer, delta: dict[str, Any], finish: str | None) -> Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return None, {
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "choices": [choice],
        }

    def _usage(self, a: Answer) -> dict[str, int]:
        n = len(a.words)
        return {
            "prompt_tokens": a.prompt_tokens,
            "completion_tokens": n,
            "total_tokens": a.prompt_tokens + n,
        }

    def completion(self, a: Answer) -> dict[str, Any]:
        message = {"role": "assistant", "content": a.text, "refusal": None}
        return {
            "id": a.id,
            "object": "chat.completion",
            "created": a.created,
            "model": a.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "length" if a.capped else "stop",
                }
            ],
            "usage": self._usage(a),
        }

    def head(self, a: Answer) -> list[Event]:
        return [self._chunk(a, {"role": "assistant", "content": ""}, None)]

    def content(self, a: Answer, text: str) -> Event:
        return self._chunk(a, {"content": text}, None)

    def tail(self, a: Answer) -> list[Event]:
        events = [self._chunk(a, {}, "length" if a.capped else "stop")]
        if a.include_usage:
            _, usage_chunk = self._chunk(a, {}, None)
            usage_chunk.update(choices=[], usage=self._usage(a))
            events.append((None, usage_chunk))
        return [*events, (None, b"[DONE]")]


class AnthropicDialect:
    def api_key(self, request: web.Request) -> str | None:
        # Anthropic's own header; recent SDKs send `Authorization: Bearer` instead.
        return request.headers.get("x-api-key") or OpenAIDialect().api_key(request)

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def max_tokens(self, body: dict[str, Any]) -> Any:
        return body.get("max_tokens")

    def completion(self, a: Answer) -> dict[str, Any]:
        return {
            "id": a.id,
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": [{"type": "text", "text": a.text}],
            "stop_reason": "max_tokens" if a.capped else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": a.prompt_tokens, "output_tokens": len(a.words)},
        }

    def head(self, a: Answer) -> list[Event]:
        message = {**self.completion(a), "content": [], "stop_reason": None}
        message["usage"] = {"input_tokens": a.prompt_tokens, "output_tokens": 1}
        return [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]

    def content(self, a: Answer, text: str) -> Event:
        delta = {"type": "text_delta", "text": text}
        return "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}

    def tail(self, a: Answer) -> list[Event]:
        stop = "max_tokens" if a.capped else "end_turn"
        return [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": len(a.words)},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]


OPENAI, ANTHROPIC = OpenAIDialect(), AnthropicDialect()


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


def invalid_reason(body: dict[str, Any], max_tokens: Any) -> str | None:
    """Why the body is not a chat request, or None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    if not all(isinstance(m, dict) for m in messages):
        return "each message must be an object"
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return "'max_tokens' must be a positive integer"
    return None


def build_answer(body: dict[str, Any], n: int, words: int, cap: int | None, prefix: str) -> Answer:
    messages: list[dict[str, Any]] = body["messages"]
    user = [m for m in messages if m.get("role") == "user"]
    prompt = _text(user[-1].get("content")) if user else ""
    texts = [_text(m.get("content")) for m in messages] + [_text(body.get("system"))]
    count = min(words, cap) if cap is not None else words
    options = body.get("stream_options")
    return Answer(
        id=f"{prefix}{n:06d}",
        model=str(body.get("model", "mock-1")),
        created=int(time.time()),
        words=answer_words(prompt, count),
        prompt_tokens=max(1, sum(len(t.split()) for t in texts)),
        capped=count < words,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )
