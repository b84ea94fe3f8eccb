"""An upstream stream read event by event through its dialect, for a codec: the event's JSON,
the upstream's own error event (its message and type) or an event that is not JSON, and the
usage reported so far. Every codec reads its upstream here, so each dialect's readers
(`stream_error`, `token_usage`) are the only place its events are understood."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .base import Dialect, TokenUsage

NOT_JSON = "the upstream sent an event that is not JSON"


def load_object(data: str) -> dict[str, Any] | None:
    """An event's JSON object; None when the data is not JSON (a non-object is an empty dict)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """The stream failed at this event: the upstream's error event, or one that is not JSON."""

    message: str  # the upstream's error message, or NOT_JSON
    type: object = None  # the error `type` the upstream named (as sent), if it did
    code: object = None  # the error `code` it named (OpenAI's), if it did
    not_json: bool = False


_NOT_JSON = StreamFailure(NOT_JSON, not_json=True)


class StreamReader:
    """`read(event, data)`: one upstream event's JSON object, its usage folded into `usage`
    (Anthropic's at message_start and message_delta, OpenAI's usage chunk), or the
    `StreamFailure` it is."""

    __slots__ = ("dialect", "usage")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.usage = TokenUsage()

    def read(self, event: str, data: str) -> dict[str, Any] | StreamFailure:
        payload = load_object(data)
        if payload is None:
            return _NOT_JSON
        message = self.dialect.stream_error(event, payload)
        if message is not None:
            error = payload.get("error")
            named = error if isinstance(error, dict) else {}
            return StreamFailure(message, named.get("type"), named.get("code"))
        self.usage = self.dialect.token_usage(self.usage, payload)
        return payload
