"""Answers from an Anthropic upstream for an OpenAI Responses client: the stream, one upstream
event in and its Responses events out at once, and the non-stream body.

Rules:
- message_start -> `response.created` then `response.in_progress` (status in_progress, no
  output yet). Every event carries `type` and a `sequence_number` counted from 0, and goes
  out as `event: <type>` + `data:`, as OpenAI sends them.
- A text block -> a `message` output item: `output_item.added`, `content_part.added`, one
  `output_text.delta` per text_delta, and at the block's stop `output_text.done`,
  `content_part.done`, `output_item.done` (the item completed, its whole text).
- A tool_use block -> a `function_call` item (`call_id` = the tool_use id): `output_item.added`
  (arguments ""), a `function_call_arguments.delta` per input_json_delta, and at its stop
  `function_call_arguments.done` and `output_item.done`.
- Thinking, signatures and server-tool blocks have no counterpart here and map to nothing.
- message_stop -> `response.completed` with the whole output and usage (input_tokens counts
  the cached prompt tokens too, as OpenAI's does); a `max_tokens` stop -> `response.incomplete`
  (`incomplete_details.reason = "max_output_tokens"`). Nothing follows it.
- An `error` event (or an event that is not JSON) -> the Responses `error` event (shapes.py's
  form: the fields at the top and nested under `error`) and nothing after it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..dialects import ANTHROPIC
from ..dialects.reader import NOT_JSON, StreamFailure, StreamReader
from ..errors import GatewayError
from ..shapes import OPENAI_TYPES
from .common import TokenUsage, openai_error, usage_from_anthropic
from .responses_request import Echo


def _event(kind: str, body: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


def responses_usage(usage: TokenUsage) -> dict[str, Any]:
    prompt = usage.prompt_tokens
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": usage.cache_read_tokens,
                                                             "cache_write_tokens": usage.cache_write_tokens},
            "output_tokens": usage.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + usage.output_tokens}


def response_object(id: str, created_at: int, model: str, echo: Echo, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    """The Responses API's `response` object, its settings echoed from the request."""
    return {
        "id": id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": echo.instructions, "max_output_tokens": echo.max_output_tokens,
        "model": model, "output": output, "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
        "store": False, "temperature": echo.temperature, "text": echo.text,
        "tool_choice": echo.tool_choice, "tools": echo.tools, "top_p": echo.top_p,
        "truncation": "disabled", "usage": usage, "user": echo.user, "metadata": echo.metadata,
    }


def _message_item(id: str, status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {"id": id, "type": "message", "status": status, "role": "assistant", "content": content}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _call_item(id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": id, "type": "function_call", "status": status, "arguments": arguments,
            "call_id": call_id, "name": name}


def _status(stop_reason: object) -> str:
    return "incomplete" if stop_reason == "max_tokens" else "completed"


class AnthropicToResponses:
    """`feed(event, data) -> bytes`: one upstream Anthropic event in, Responses events out."""

    def __init__(self, model: str, echo: Echo, id: str, created_at: int | None = None) -> None:
        self.model = model
        self.echo = echo
        self.id = id
        self.created_at = int(time.time()) if created_at is None else created_at
        self.done = False  # response.completed/incomplete or an error went out; nothing follows
        self.failure: str | None = None
        self._read = StreamReader(ANTHROPIC)  # parse, the upstream's error event, usage
        self._sequence = 0
        self._started = False
        self._stop: object = None
        self._output: list[dict[str, Any]] = []  # finished items, by output_index
        #: Anthropic block index -> [output_index, item, text or arguments so far]
        self._open: dict[int, list[Any]] = {}

    @property
    def usage(self) -> TokenUsage:
        return self._read.usage

    def feed(self, event: str, data: str) -> bytes:
        if self.done:
            return b""
        payload = self._read.read(event, data)
        if isinstance(payload, StreamFailure):
            self.failure = payload.message
            if payload.not_json:
                return self.error_event(502, "server_error", NOT_JSON, code="upstream_error")
            found = openai_error(payload.type, payload.message, 500)
            return self._error(found["type"], str(found["code"]), payload.message)
        kind = payload.get("type", event)
        if kind == "message_start":
            return self._start()
        if kind == "content_block_start":
            return self._start() + self._block_start(payload)
        if kind == "content_block_delta":
            return self._block_delta(payload)
        if kind == "content_block_stop":
            return self._block_stop(payload)
        if kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self._stop = delta["stop_reason"]
            return b""
        if kind == "message_stop":
            out = self._start()
            for index in sorted(self._open):  # a block the upstream never stopped
                out += self._block_stop({"index": index})
            status = _status(self._stop)
            final = self._response(status, self._output, responses_usage(self.usage))
            self.done = True
            return out + self._emit(f"response.{status}", {"response": final})
        return b""  # ping, and event types added later

    def gateway_error(self, exc: GatewayError) -> bytes:
        """A failure the gateway detected, as the Responses `error` event."""
        return self.error_event(exc.status, OPENAI_TYPES.get(exc.kind, "server_error"), exc.message,
                                code=exc.code)

    def error_event(self, status: int, type: str, message: str, code: str | None = None) -> bytes:
        """A failure the gateway detected mid-stream, as the Responses `error` event. `type`
        is OpenAI's error.type (a gateway error kind is mapped to it)."""
        if self.done:
            return b""
        return self._error(OPENAI_TYPES.get(type, type), code or str(status), message)

    # ---------------------------------------------------------------------------------------

    def _emit(self, kind: str, body: dict[str, Any]) -> bytes:
        out = _event(kind, {"type": kind, "sequence_number": self._sequence, **body})
        self._sequence += 1
        return out

    def _error(self, type: str, code: str, message: str) -> bytes:
        self.done = True
        error = {"type": type, "code": code, "message": message, "param": None}
        return self._emit("error", {"code": code, "message": message, "param": None, "error": error})

    def _response(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
                  ) -> dict[str, Any]:
        return response_object(self.id, self.created_at, self.model, self.echo, status, output, usage)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        started = self._response("in_progress", [], None)
        return (self._emit("response.created", {"response": started})
                + self._emit("response.in_progress", {"response": started}))

    def _block_start(self, payload: dict[str, Any]) -> bytes:
        block, index = payload.get("content_block"), payload.get("index")
        if not isinstance(block, dict) or not isinstance(index, int) or index in self._open:
            return b""
        at = len(self._output) + len(self._open)
        if block.get("type") == "text":
            item = _message_item(f"msg_{self.id}_{at}", "in_progress", None)
            self._open[index] = [at, item, ""]
            where = {"item_id": item["id"], "output_index": at, "content_index": 0}
            out = (self._emit("response.output_item.added", {"output_index": at, "item": item})
                   + self._emit("response.content_part.added", {**where, "part": _text_part("")}))
            text = block.get("text")
            return out + (self._text(index, text) if isinstance(text, str) and text else b"")
        if block.get("type") == "tool_use":
            call_id, name = str(block.get("id", "")), str(block.get("name", ""))
            item = _call_item(f"fc_{call_id}", call_id, name, "", "in_progress")
            self._open[index] = [at, item, ""]
            return self._emit("response.output_item.added", {"output_index": at, "item": item})
        return b""

    def _block_delta(self, payload: dict[str, Any]) -> bytes:
        delta, index = payload.get("delta"), payload.get("index")
        if not isinstance(delta, dict) or not isinstance(index, int) or index not in self._open:
            return b""
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return self._text(index, delta["text"])
        fragment = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and isinstance(fragment, str) and fragment:
            at, item, _ = self._open[index]
            if item["type"] != "function_call":
                return b""
            self._open[index][2] += fragment
            return self._emit("response.function_call_arguments.delta",
                              {"item_id": item["id"], "output_index": at, "delta": fragment})
        return b""

    def _text(self, index: int, text: str) -> bytes:
        at, item, _ = self._open[index]
        if item["type"] != "message":
            return b""
        self._open[index][2] += text
        return self._emit("response.output_text.delta", {
            "item_id": item["id"], "output_index": at, "content_index": 0, "delta": text, "logprobs": []})

    def _block_stop(self, payload: dict[str, Any]) -> bytes:
        index = payload.get("index")
        if not isinstance(index, int) or index not in self._open:
            return b""
        at, item, so_far = self._open.pop(index)
        if item["type"] == "message":
            where = {"item_id": item["id"], "output_index": at, "content_index": 0}
            done = _message_item(item["id"], "completed", so_far)
            out = (self._emit("response.output_text.done", {**where, "text": so_far, "logprobs": []})
                   + self._emit("response.content_part.done", {**where, "part": _text_part(so_far)}))
        else:
            arguments = so_far or "{}"
            done = _call_item(item["id"], item["call_id"], item["name"], arguments, "completed")
            out = self._emit("response.function_call_arguments.done",
                             {"item_id": item["id"], "output_index": at, "arguments": arguments})
        self._output.append(done)
        return out + self._emit("response.output_item.done", {"output_index": at, "item": done})


def message_to_response(body: dict[str, Any], model: str, echo: Echo, id: str,
                        created_at: int | None = None) -> dict[str, Any]:
    """An Anthropic `message` body -> a Responses `response` object."""
    output: list[dict[str, Any]] = []
    content = body.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            output.append(_message_item(f"msg_{id}_{len(output)}", "completed", block["text"]))
        elif block.get("type") == "tool_use":
            call_id = str(block.get("id", ""))
            arguments = orjson.dumps(block.get("input", {})).decode()
            output.append(_call_item(f"fc_{call_id}", call_id, str(block.get("name", "")), arguments,
                                     "completed"))
    usage = responses_usage(usage_from_anthropic(body.get("usage"), TokenUsage()))
    created = int(time.time()) if created_at is None else created_at
    return response_object(id, created, model, echo, _status(body.get("stop_reason")), output, usage)
