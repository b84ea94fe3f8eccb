"""`/v1/responses` toward an Anthropic-dialect target: what the handler (`apis.py`) asks of the
codecs, in one place. Built once per request when its plan has an Anthropic target, which is
when the request is checked for what cannot be carried (a 400 before admission).

- `body_for(target)`: the Messages request (translated once, renamed per target).
- `answer(body)`: a JSON `message` -> the Responses `response` object.
- `sink(write)`: the stream, event by event (`AnthropicToResponses` in a `Translating` sink).
- `error_body(body, status)`: an upstream 4xx, in OpenAI's error shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..body import Call, dumps
from ..codecs import translate_error_body
from ..codecs.anthropic_to_responses import AnthropicToResponses, message_to_response
from ..codecs.responses_request import Echo, responses_to_messages
from ..dialects import ANTHROPIC
from ..relay.sinks import Sink, Translating, Write
from ..routing import Plan, Target
from ..shapes import RESPONSES_SHAPE


class ResponsesToClaude:
    __slots__ = ("_request", "_echo", "id")

    def __init__(self, call: Call, default_max_tokens: int) -> None:
        self._request, self._echo = responses_to_messages(call.body, default_max_tokens)
        self.id = f"resp_{uuid.uuid4().hex}"

    @classmethod
    def for_plan(cls, call: Call, plan: Plan, default_max_tokens: int) -> ResponsesToClaude | None:
        """The bridge when a target of `plan` speaks Anthropic's dialect, else None."""
        if not any(t.upstream.dialect == "anthropic" for t in plan.targets):
            return None
        return cls(call, default_max_tokens)

    def body_for(self, target: Target) -> bytes:
        return dumps({**self._request, "model": target.model})

    def answer(self, model: str) -> Callable[[dict[str, Any]], bytes]:
        return lambda body: orjson.dumps(message_to_response(body, model, self._echo, self.id))

    def sink(self, model: str, max_line_bytes: int) -> Callable[[Write], Sink]:
        codec = AnthropicToResponses(model, self._echo, self.id)
        end = ANTHROPIC.end_event  # a complete answer that came without message_stop still ends
        return lambda write: Translating(write, RESPONSES_SHAPE, codec, max_line_bytes, end)

    @staticmethod
    def error_body(body: bytes, status: int) -> bytes:
        return translate_error_body(body, "anthropic", "openai", status)

    @property
    def echo(self) -> Echo:
        return self._echo
