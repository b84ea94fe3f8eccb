"""OpenAI chat completions: `Authorization: Bearer`, `{"error": {...}}`, usage in the last chunk,
`finish_reason` in a choice (its words are the neutral ones other dialects map to and from),
`context_length_exceeded` for a prompt too long."""

from __future__ import annotations

from typing import Any

from ..markers import Marker, Markers
from .base import DONE, Dialect, TokenUsage, Usage, choice_zero, count, error_message, sse
from .spot import ClientSpot, DialectSpot


class OpenAIDialect(Dialect):
    name = "openai"
    path = "/chat/completions"
    auth_header = "authorization"

    end_markers: tuple[Marker, ...] = Markers(Marker(b"data: [DONE]"), Marker(b"data:[DONE]"))
    error_markers: tuple[Marker, ...] = Markers(Marker(b'data: {"error"', whole=False),
                                                Marker(b'data:{"error"', whole=False))
    end_bytes = b"data: [DONE]\n\n"
    end_event = ("message", "[DONE]")

    def usage_from_body(self, body: dict[str, Any]) -> Usage | None:
        usage = body.get("usage")
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        prompt = _int(usage.get("prompt_tokens"))
        return Usage(prompt, _int(usage.get("completion_tokens")), True, min(cached, prompt))

    def update_usage(self, usage: Usage, data: dict[str, Any]) -> None:
        found = self.usage_from_body(data)
        if found is not None:
            usage.prompt_tokens, usage.completion_tokens = found.prompt_tokens, found.completion_tokens
            usage.cache_read_tokens = found.cache_read_tokens
            usage.reported = True

    def token_usage(self, before: TokenUsage, data: dict[str, Any]) -> TokenUsage:
        usage = data.get("usage")
        return before if usage is None else usage_from_openai(usage, before)

    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        choice = choice_zero(data.get("choices"))
        delta = choice.get("delta") if choice is not None else None
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) and content else None

    def is_final(self, event: str, data: str) -> bool:
        return data.strip() == "[DONE]"

    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        error = data.get("error")
        return None if error is None else error_message(error, "upstream error")

    def finish_reason(self, data: dict[str, Any]) -> str | None:
        choice = choice_zero(data.get("choices"))
        reason = choice.get("finish_reason") if choice is not None else None
        return reason if isinstance(reason, str) else None

    def prompt_too_long(self, error: dict[str, Any]) -> bool:
        return error.get("code") == "context_length_exceeded"

    def prefill(self, body: dict[str, Any], text: str) -> None:
        body["messages"] = [*body.get("messages", []), {"role": "assistant", "content": text}]

    def client_spot(self, include_usage: bool) -> ClientSpot:
        return OpenAISpot(self, include_usage)

    def simple_request(self, body: dict[str, Any]) -> dict[str, Any]:
        request = {k: v for k, v in body.items() if k != "system"}
        if body.get("system"):
            request["messages"] = [{"role": "system", "content": body["system"]}, *body["messages"]]
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        return request


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def usage_from_openai(usage: object, before: TokenUsage) -> TokenUsage:
    """An OpenAI `usage` object (the last chunk with include_usage, or a body)."""
    if not isinstance(usage, dict):
        return before
    prompt = count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(prompt, count(details.get("cached_tokens"))) if isinstance(details, dict) else 0
    return TokenUsage(
        input_tokens=prompt - cached,
        output_tokens=count(usage.get("completion_tokens")),
        cache_read_tokens=cached,
        reported=True,
    )


class OpenAISpot(DialectSpot):
    """A chat client's stream: a continuation's chunks carry the first chunk's id, created
    and model; its ending is a finish chunk, the usage chunk when asked, then `[DONE]`."""

    def __init__(self, dialect: Dialect, include_usage: bool) -> None:
        super().__init__(dialect, include_usage)
        self.head: dict[str, Any] = {}  # the first chunk's id, created, model

    def noted(self, event: str, data: dict[str, Any]) -> None:
        if not self.head and "id" in data:
            self.head = {k: data.get(k) for k in ("id", "created", "model")}
        choice = choice_zero(data.get("choices"))
        delta = choice.get("delta") if choice is not None else None
        if isinstance(delta, dict) and delta.get("tool_calls"):
            self.tool = True

    def more_text(self, text: str) -> bytes:
        return sse({**self.head, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})

    def ending(self, stop: str | None, source: Dialect, usage: Usage, text: str) -> bytes:
        out = sse({**self.head, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": self.reason(stop, source)}]})
        if self.include_usage:
            out += sse({**self.head, "object": "chat.completion.chunk", "choices": [],
                        "usage": {"prompt_tokens": usage.prompt_tokens,
                                  "completion_tokens": usage.completion_tokens,
                                  "total_tokens": usage.total}})
        return out + DONE


OPENAI = OpenAIDialect()
