"""Anthropic Messages: `x-api-key` + `anthropic-version`, `{"type": "error", ...}`, usage in
`message_start` (input) and `message_delta` (output, cumulative), `stop_reason` in
`message_delta` (and its table to OpenAI's finish reasons and back), "prompt is too long"."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

from ..config import UpstreamSpec
from ..header_names import ANTHROPIC_VERSION, X_API_KEY
from ..markers import Marker, Markers
from .base import Dialect, TokenUsage, Usage, count, error_message, model_ids, sse
from .spot import ClientSpot, DialectSpot

API_VERSION = "2023-06-01"

#: Anthropic stop_reason -> OpenAI finish_reason. A stop sequence is a normal stop to OpenAI;
#: `pause_turn` (a server tool paused a long turn) is one too, the client may continue.
FINISH_REASONS: Mapping[str, str] = MappingProxyType({
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
})

#: OpenAI finish_reason -> Anthropic stop_reason (`function_call` is the legacy `tool_calls`).
STOP_REASONS: Mapping[str, str] = MappingProxyType({
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
})
MODELS_PAGE = 1000  # the largest page the models list gives


class AnthropicDialect(Dialect):
    name = "anthropic"
    path = "/messages"

    auth_header = X_API_KEY

    def api_root(self, upstream: UpstreamSpec) -> str:
        # base_url may be given with or without the /v1 the SDKs add themselves.
        base = upstream.base_url.rstrip("/")
        return base + ("" if base.endswith("/v1") else "/v1")

    def models_url(self, upstream: UpstreamSpec, after: str | None = None) -> str:
        # Paginated: up to 1000 a page, the next one after the last id of this one.
        url = self.url(upstream, "/models")
        page = urlencode({"limit": MODELS_PAGE, **({"after_id": after} if after else {})})
        return f"{url}{'&' if '?' in url else '?'}{page}"

    def parse_models(self, body: object) -> tuple[list[str], str | None]:
        # {"data": [{"type": "model", "id"}, ...], "has_more", "first_id", "last_id"}
        names = model_ids(body)
        assert isinstance(body, dict)  # model_ids checked it
        last = body.get("last_id") or (names[-1] if names else None)
        more = body.get("has_more") is True and isinstance(last, str) and bool(names)
        return names, last if more else None

    end_markers = Markers(Marker(b"event: message_stop"), Marker(b"event:message_stop"),
                          Marker(b'data: {"type":"message_stop"', whole=False),
                          Marker(b'data: {"type": "message_stop"', whole=False))
    error_markers = Markers(Marker(b"event: error"), Marker(b"event:error"),
                            Marker(b'data: {"type":"error"', whole=False),
                            Marker(b'data: {"type": "error"', whole=False))
    end_bytes = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    end_event = ("message_stop", '{"type":"message_stop"}')
    default_headers = {ANTHROPIC_VERSION: API_VERSION}

    def usage_from_body(self, body: dict[str, Any]) -> Usage | None:
        usage = body.get("usage")
        if not isinstance(usage, dict):
            return None
        read = _int(usage.get("cache_read_input_tokens"))
        write = _int(usage.get("cache_creation_input_tokens"))
        prompt = _int(usage.get("input_tokens")) + read + write
        return Usage(prompt, _int(usage.get("output_tokens")), True, read, write)

    def update_usage(self, usage: Usage, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), dict):
            found = self.usage_from_body(data["message"])
            if found is not None:
                usage.prompt_tokens = found.prompt_tokens
                usage.cache_read_tokens = found.cache_read_tokens
                usage.cache_write_tokens = found.cache_write_tokens
        elif kind == "message_delta":
            found = self.usage_from_body(data)
            if found is not None:
                usage.completion_tokens = found.completion_tokens
                usage.reported = True

    def token_usage(self, before: TokenUsage, data: dict[str, Any]) -> TokenUsage:
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), dict):
            return usage_from_anthropic(data["message"].get("usage"), before)
        if kind == "message_delta":
            return usage_from_anthropic(data.get("usage"), before)
        return before

    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        if data.get("type") != "content_block_delta":
            return None
        delta = data.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "text_delta":
            text = delta.get("text")
            return text if isinstance(text, str) and text else None
        return None

    def is_final(self, event: str, data: str) -> bool:
        return event == "message_stop"

    def ends_answer(self, event: str, data: dict[str, Any]) -> bool:
        return event == "message_stop" or data.get("type") == "message_stop"

    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        if event == "error" or data.get("type") == "error":
            return error_message(data.get("error"), "upstream error")
        return None

    def finish_reason(self, data: dict[str, Any]) -> str | None:
        delta = data.get("delta")
        if data.get("type") == "message_delta" and isinstance(delta, dict):
            reason = delta.get("stop_reason")
            return reason if isinstance(reason, str) else None
        return None

    finish_from_openai = STOP_REASONS
    finish_to_openai = FINISH_REASONS
    default_finish = "end_turn"

    def prefill(self, body: dict[str, Any], text: str) -> None:
        body["messages"] = [*body.get("messages", []), {"role": "assistant", "content": text}]

    def client_spot(self, include_usage: bool) -> ClientSpot:
        return AnthropicSpot(self, include_usage)

    def prompt_too_long(self, error: dict[str, Any]) -> bool:
        message = error.get("message")
        return (error.get("type") == "invalid_request_error" and isinstance(message, str)
                and "prompt is too long" in message.lower())

    def simple_request(self, body: dict[str, Any]) -> dict[str, Any]:
        request = dict(body)
        system = [m["content"] for m in body["messages"] if m.get("role") == "system"]
        request["messages"] = [m for m in body["messages"] if m.get("role") != "system"]
        if system and "system" not in request:
            request["system"] = "\n".join(str(s) for s in system)
        request.setdefault("max_tokens", 1024)
        request["stream"] = True
        return request


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def usage_from_anthropic(usage: object, before: TokenUsage) -> TokenUsage:
    """Fold an Anthropic `usage` object (message_start, message_delta or a body) into `before`.
    Counts are cumulative; a field the object leaves out keeps its earlier value."""
    if not isinstance(usage, dict):
        return before

    def pick(key: str, old: int) -> int:
        return count(usage[key]) if key in usage and usage[key] is not None else old

    return TokenUsage(
        input_tokens=pick("input_tokens", before.input_tokens),
        output_tokens=pick("output_tokens", before.output_tokens),
        cache_read_tokens=pick("cache_read_input_tokens", before.cache_read_tokens),
        cache_write_tokens=pick("cache_creation_input_tokens", before.cache_write_tokens),
        reported=True,
    )


class AnthropicSpot(DialectSpot):
    """A Messages client's stream: a continuation's text goes into the text block the client
    has open (one is opened after the last when the cut came before it); its ending closes
    the block, then `message_delta` (stop reason, output tokens) and `message_stop`."""

    def __init__(self, dialect: Dialect, include_usage: bool) -> None:
        super().__init__(dialect, include_usage)
        self.block: int | None = None  # the open text block's index
        self.next_block = 0

    def noted(self, event: str, data: dict[str, Any]) -> None:
        kind = data.get("type")
        index = data.get("index")
        if kind == "content_block_start" and isinstance(index, int):
            block = data.get("content_block")
            if isinstance(block, dict) and block.get("type") == "text":
                self.block = index
            else:
                self.tool = True
            self.next_block = index + 1
        elif kind == "content_block_stop":
            self.block = None
        elif kind == "message_delta":  # the answer's ending has begun
            self.finished = True

    def more_text(self, text: str) -> bytes:
        head = b""
        if self.block is None:  # cut before a text block opened: open one after the last
            self.block = self.next_block
            head = sse({"type": "content_block_start", "index": self.block,
                        "content_block": {"type": "text", "text": ""}}, "content_block_start")
        return head + sse({"type": "content_block_delta", "index": self.block,
                           "delta": {"type": "text_delta", "text": text}}, "content_block_delta")

    def ending(self, stop: str | None, source: Dialect, usage: Usage, text: str) -> bytes:
        out = b""
        if self.block is not None:
            out += sse({"type": "content_block_stop", "index": self.block}, "content_block_stop")
        delta = {"stop_reason": self.reason(stop, source), "stop_sequence": None}
        return out + sse({"type": "message_delta", "delta": delta,
                          "usage": {"output_tokens": usage.completion_tokens}}, "message_delta") + sse(
            {"type": "message_stop"}, "message_stop")


ANTHROPIC = AnthropicDialect()
