"""OpenAI chat completions: `Authorization: Bearer`, `{"error": {...}}`, usage in the last chunk."""

from __future__ import annotations

from typing import Any

from ..markers import Marker
from .base import Dialect, Usage


class OpenAIDialect(Dialect):
    name = "openai"
    path = "/chat/completions"
    auth_header = "authorization"

    end_markers = (Marker(b"data: [DONE]"), Marker(b"data:[DONE]"))
    error_markers = (Marker(b'data: {"error"', whole=False), Marker(b'data:{"error"', whole=False))
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

    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        delta = choices[0].get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) and content else None

    def is_final(self, event: str, data: str) -> bool:
        return data.strip() == "[DONE]"

    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message", "upstream error"))
        return None

    def simple_request(self, body: dict[str, Any]) -> dict[str, Any]:
        request = {k: v for k, v in body.items() if k != "system"}
        if body.get("system"):
            request["messages"] = [{"role": "system", "content": body["system"]}, *body["messages"]]
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        return request


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


OPENAI = OpenAIDialect()
