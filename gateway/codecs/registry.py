"""The chat translations, looked up by (client dialect, upstream dialect): the request body,
a JSON answer and a stream codec for each pair the gateway translates. A same-dialect pair is
never here (its bytes pass through); the browser's simple events are `SimpleCodec` from any
upstream dialect. A new dialect adds its pairs to `TRANSLATIONS`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import StreamCodec
from .anthropic_to_chat import AnthropicToChat, message_to_completion
from .chat_request import chat_to_messages
from .chat_to_anthropic import ChatToAnthropic, completion_to_message
from .messages_request import messages_to_chat
from .simple import SimpleCodec


@dataclass(frozen=True, slots=True)
class Translation:
    #: the client's request body -> the upstream's (`default_max_tokens` where one is required)
    request: Callable[[dict[str, Any], int], dict[str, Any]]
    #: the upstream's JSON answer -> the client's (the model that answered)
    answer: Callable[[dict[str, Any], str], dict[str, Any]]
    #: a stream codec for one answer: (the model that answered, include usage) -> codec
    stream: Callable[[str, bool], StreamCodec]


def _to_chat(model: str, include_usage: bool) -> StreamCodec:
    return AnthropicToChat(model, include_usage, int(time.time()), f"chatcmpl-{uuid.uuid4().hex}")


def _to_messages(model: str, include_usage: bool) -> StreamCodec:
    return ChatToAnthropic(model, f"msg_{uuid.uuid4().hex}")


TRANSLATIONS: Mapping[tuple[str, str], Translation] = MappingProxyType({
    ("openai", "anthropic"): Translation(chat_to_messages, message_to_completion, _to_chat),
    ("anthropic", "openai"): Translation(lambda body, _: messages_to_chat(body), completion_to_message,
                                         _to_messages),
})


def translation(client: str, upstream: str) -> Translation:
    """The translation from the `client` dialect to the `upstream` one (KeyError: none)."""
    return TRANSLATIONS[(client, upstream)]


__all__ = ["TRANSLATIONS", "SimpleCodec", "Translation", "translation"]
