"""Dialect translation without I/O: requests, stream events, bodies and error bodies between
OpenAI chat completions and Anthropic Messages, and the browser's simple events.

Every stream codec has the same face (`StreamCodec`): `feed(event, data) -> bytes` for one
parsed upstream SSE event (gateway.sse.Event), returning the client's bytes for it at once
(b"" when it maps to nothing); `done` once the terminal event (end marker or error) went out;
`failure`, the upstream's own error message when it sent one; `usage`; and
`error_event(status, type, message)` / `gateway_error(exc)` for a failure the gateway detects
mid-stream. `registry.py` looks the codecs up by (client dialect, upstream dialect).
"""

from __future__ import annotations

from typing import Protocol

from ..errors import GatewayError
from .anthropic_to_chat import AnthropicToChat, message_to_completion
from .chat_request import chat_to_messages
from .chat_to_anthropic import ChatToAnthropic, completion_to_message
from .common import TokenUsage
from .error_bodies import translate_error_body
from .messages_request import messages_to_chat
from .simple import SimpleCodec


class StreamCodec(Protocol):
    done: bool
    failure: str | None

    @property
    def usage(self) -> TokenUsage: ...

    def feed(self, event: str, data: str) -> bytes: ...

    def error_event(self, status: int, type: str, message: str) -> bytes: ...

    def gateway_error(self, exc: GatewayError) -> bytes:
        """A failure the gateway detected mid-stream, as the client's error event (the codec
        knows the client's dialect: its error types and shape)."""
        ...


__all__ = [
    "AnthropicToChat",
    "ChatToAnthropic",
    "SimpleCodec",
    "StreamCodec",
    "TokenUsage",
    "chat_to_messages",
    "completion_to_message",
    "message_to_completion",
    "messages_to_chat",
    "translate_error_body",
]
