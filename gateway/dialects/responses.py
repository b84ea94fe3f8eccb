"""OpenAI's Responses API as a dialect: usage is `input_tokens`/`output_tokens`, in the body
or in the final `response.*` event's `response`; a stream ends at `response.completed`,
`response.failed` or `response.incomplete`, and its error event is `event: error` (the
gateway's own error event in its shape is `shapes.RESPONSES_SHAPE`); a continuation's text
is its `response.output_text.delta` events, and a continuation is asked as an assistant input
item and written into the client's stream by `ResponsesSpot`. Everything else (key, model
list) is OpenAI's.
Only `/v1/responses` speaks it: it is no upstream dialect of the config."""

from __future__ import annotations

import uuid
from typing import Any

from ..markers import Marker, Markers
from .base import Dialect, Usage, sse
from .openai import OpenAIDialect
from .spot import ClientSpot, DialectSpot

#: A Responses stream ends at one of these events (an `event:` line, or a `data:` line that
#: names its type first); its error event is `event: error`. On line starts only.
RESPONSES_ENDS = Markers(*(
    marker for kind in (b"response.completed", b"response.failed", b"response.incomplete")
    for marker in (Marker(b"event: " + kind), Marker(b"event:" + kind),
                   Marker(b'data: {"type":"' + kind + b'"', whole=False))))
RESPONSES_ERRORS = Markers(Marker(b"event: error"), Marker(b"event:error"),
                           Marker(b'data: {"type":"error"', whole=False))


class ResponsesDialect(OpenAIDialect):
    # `name` stays "openai": the upstreams that serve the Responses API are OpenAI-dialect ones.
    end_markers = RESPONSES_ENDS
    error_markers = RESPONSES_ERRORS

    def usage_from_body(self, body: dict[str, Any]) -> Usage | None:
        usage = body.get("usage")
        if not isinstance(usage, dict):
            return None
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")), True)

    def update_usage(self, usage: Usage, data: dict[str, Any]) -> None:
        answer = data.get("response")
        found = self.usage_from_body(answer) if isinstance(answer, dict) else None
        if found is not None:
            usage.prompt_tokens, usage.completion_tokens = found.prompt_tokens, found.completion_tokens
            usage.reported = True


    # A continuation's events (a mid-stream resume of `/v1/responses`) are read with these.
    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        if (data.get("type") or event) != "response.output_text.delta":
            return None
        delta = data.get("delta")
        return delta if isinstance(delta, str) and delta else None

    def is_final(self, event: str, data: str) -> bool:
        return event in _FINAL

    def ends_answer(self, event: str, data: dict[str, Any]) -> bool:
        return (data.get("type") or event) in _FINAL

    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        if event == "error" or data.get("type") == "error":
            error = data.get("error")
            message = error.get("message") if isinstance(error, dict) else data.get("message")
            return str(message or "upstream error")
        return None

    def finish_reason(self, data: dict[str, Any]) -> str | None:
        return None  # a Responses stream has no finish before its end event

    def prefill(self, body: dict[str, Any], text: str) -> None:
        # The input, then `text` as the assistant's (a string input becomes the user's message).
        given = body.get("input")
        turns = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
        body["input"] = [*turns, {"role": "assistant", "content": text}]

    def client_spot(self, include_usage: bool) -> ClientSpot:
        return ResponsesSpot(self, include_usage)


class ResponsesSpot(DialectSpot):
    """A `/v1/responses` client's stream. Every event the gateway adds carries the next
    `sequence_number` after the last one the client has (`last_number`), so the numbers stay
    consecutive. Text goes into the message item the client has open (one is opened after the
    last output when the cut came before it); the ending closes the text part and the item
    and sends `response.completed` with the response the client was given at
    `response.created`, its whole text and every attempt's usage. An output item that is not
    a message or reasoning (a function call) makes the stream not resumable."""

    def __init__(self, dialect: Dialect, include_usage: bool) -> None:
        super().__init__(dialect, include_usage)
        self.response: dict[str, Any] = {}  # as `response.created` gave it
        self.item_id: str | None = None  # the message item open for text
        self.output_index = 0
        self.content_index = 0
        self.next_output = 0

    def noted(self, event: str, data: dict[str, Any]) -> None:
        seq = data.get("sequence_number")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.last_number = max(self.last_number, seq)
        kind = data.get("type") or event
        if kind == "response.created" and isinstance(data.get("response"), dict):
            self.response = dict(data["response"])
        elif kind == "response.output_item.added" and isinstance(data.get("item"), dict):
            item, index = data["item"], data.get("output_index")
            if isinstance(index, int):
                self.next_output = max(self.next_output, index + 1)
            if item.get("type") == "message":
                self.item_id, self.output_index, self.content_index = item.get("id"), index or 0, 0
            elif item.get("type") not in ("message", "reasoning"):
                self.tool = True
        elif kind == "response.content_part.added" and isinstance(data.get("content_index"), int):
            self.content_index = data["content_index"]

    def more_text(self, text: str) -> bytes:
        out = b""
        if self.item_id is None:  # cut before a message item opened: open one after the last
            self.item_id, self.output_index = f"msg_{uuid.uuid4().hex}", self.next_output
            self.content_index, self.next_output = 0, self.next_output + 1
            out += self._event("response.output_item.added", output_index=self.output_index, item={
                "id": self.item_id, "type": "message", "status": "in_progress", "role": "assistant",
                "content": []})
            out += self._event("response.content_part.added", **self._where(),
                               part={"type": "output_text", "text": "", "annotations": []})
        return out + self._event("response.output_text.delta", **self._where(), delta=text)

    def ending(self, stop: str | None, source: Dialect, usage: Usage, text: str) -> bytes:
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"id": self.item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [part]}
        response = {**self.response, "status": "completed", "output": [item], "usage": {
            "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total}}
        return (self._event("response.output_text.done", **self._where(), text=text)
                + self._event("response.content_part.done", **self._where(), part=part)
                + self._event("response.output_item.done", output_index=self.output_index, item=item)
                + self._event("response.completed", response=response))

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": self.output_index,
                "content_index": self.content_index}

    def _event(self, kind: str, **data: Any) -> bytes:
        self.last_number += 1
        return sse({"type": kind, **data, "sequence_number": self.last_number}, kind)


_FINAL = ("response.completed", "response.failed", "response.incomplete")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


RESPONSES = ResponsesDialect()
