"""The OpenAI Responses API shape (`POST /v1/responses`): the response object and its event stream.

Pure, like `shapes`. Every stream event carries `type` and a `sequence_number` counted
from 0; the stream ends with `response.completed` (or `response.incomplete` when
`max_output_tokens` cut it short), and has no `[DONE]`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from .answers import Answer, Conversation, ToolCall
from .shapes import Kind, OpenAIShape, Step


def _input_messages(items: list[Any]) -> list[dict[str, Any]]:
    """Input items that are messages (`{"role", "content"}`); tool outputs and the like are not."""
    messages = [item for item in items if isinstance(item, dict) and isinstance(item.get("role"), str)]
    return messages or [{"role": "user", "content": ""}]


class ResponsesShape(OpenAIShape):
    id_prefix = "resp_mock"

    def max_tokens(self, body: dict[str, Any]) -> Any:
        return body.get("max_output_tokens")

    def read(self, body: dict[str, Any]) -> Conversation | str:
        given = body.get("input")
        if isinstance(given, str):
            messages = [{"role": "user", "content": given}]
        elif isinstance(given, list) and given:
            messages = _input_messages(given)
        else:
            return "'input' must be a string or a non-empty list of input items"
        return Conversation(messages, body.get("instructions"), body.get("tools"))

    def _status(self, a: Answer) -> str:
        return "incomplete" if a.capped and not a.tool_calls else "completed"

    def _message_item(self, a: Answer, status: str) -> dict[str, Any]:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": a.text}
        return {
            "id": f"msg_{a.id}",
            "type": "message",
            "status": status,
            "content": [part],
            "role": "assistant",
        }

    def _call_item(self, call: ToolCall, arguments: str, status: str) -> dict[str, Any]:
        return {
            "id": f"fc_{call.key}",
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": f"call_{call.key}",
            "name": call.name,
        }

    def _response(self, a: Answer, status: str, output: list[Any], usage: Any) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": a.id,
            "object": "response",
            "created_at": a.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": None,
            "max_output_tokens": None,
            "model": a.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }

    def responses_usage(self, a: Answer) -> dict[str, Any]:
        n = a.completion_tokens
        return {
            "input_tokens": a.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": n,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": a.prompt_tokens + n,
        }

    def completion(self, a: Answer) -> dict[str, Any]:
        status = self._status(a)
        output = [self._message_item(a, status)] if a.pieces or not a.tool_calls else []
        output += [self._call_item(c, c.arguments, "completed") for c in a.tool_calls]
        return self._response(a, status, output, self.responses_usage(a))

    def stream(self, a: Answer) -> Iterator[Step]:
        seq = itertools.count()

        def event(kind: str, body: dict[str, Any], step: Kind = "meta") -> Step:
            return (kind, {"type": kind, "sequence_number": next(seq), **body}), step

        started = self._response(a, "in_progress", [], None)
        yield event("response.created", {"response": started})
        yield event("response.in_progress", {"response": started})
        out = 0
        if a.pieces or not a.tool_calls:
            item = {**self._message_item(a, "in_progress"), "content": []}
            at = {"item_id": item["id"], "output_index": out, "content_index": 0}
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            yield event("response.output_item.added", {"output_index": out, "item": item})
            yield event("response.content_part.added", {**at, "part": part})
            for piece in a.pieces:
                yield event("response.output_text.delta", {**at, "delta": piece, "logprobs": []}, "content")
            yield event("response.output_text.done", {**at, "text": a.text, "logprobs": []})
            yield event("response.content_part.done", {**at, "part": {**part, "text": a.text}})
            done = self._message_item(a, self._status(a))
            yield event("response.output_item.done", {"output_index": out, "item": done})
            out += 1
        for call in a.tool_calls:
            item = self._call_item(call, "", "in_progress")
            at = {"item_id": item["id"], "output_index": out}
            yield event("response.output_item.added", {"output_index": out, "item": item})
            for fragment in call.fragments():
                yield event("response.function_call_arguments.delta", {**at, "delta": fragment}, "content")
            yield event("response.function_call_arguments.done", {**at, "arguments": call.arguments})
            done = self._call_item(call, call.arguments, "completed")
            yield event("response.output_item.done", {"output_index": out, "item": done})
            out += 1
        final = self.completion(a)
        yield event(f"response.{final['status']}", {"response": final}, "end")


RESPONSES_SHAPE = ResponsesShape()
