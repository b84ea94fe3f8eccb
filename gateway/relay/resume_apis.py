"""Mid-stream resume, the request and the APIs that are not chat: the body that asks an
upstream to go on from the streamed text (`with_prefill`), what the client of `/v1/responses`
and `/v1/completions` has seen (`see_*`), and the events a continuation adds to its stream
(`*_text`, `*_ending`), in that API's own shapes and ids.

Rules:
- Responses: every event the gateway adds carries the next `sequence_number` after the last
  one the client has (`ResponsesState.sequence`), so the numbers stay consecutive. Text goes
  into the message item the client has open (one is opened when the cut came before it);
  the ending closes the text part and the item and sends `response.completed` with the
  response the client was given at `response.created`, its whole text and every attempt's
  usage.
- Completions: text chunks with the first chunk's id, created and model; the ending is a
  finish chunk (the usage chunk with include_usage), then `[DONE]`.
- A function call (or any output item that is not a message or reasoning) makes the stream
  not resumable, as a tool call does in chat.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..codecs.common import DONE, sse
from ..dialects import Usage

_NOT_TOOLS = ("message", "reasoning")


@dataclass(slots=True)
class ResponsesState:
    sequence: int = -1  # the last sequence_number the client has
    response: dict[str, Any] = field(default_factory=dict)  # as `response.created` gave it
    item_id: str | None = None  # the message item open for text
    output_index: int = 0
    content_index: int = 0
    next_output: int = 0

    def number(self) -> int:
        self.sequence += 1
        return self.sequence


def see_responses(state: ResponsesState, event: str, data: dict[str, Any]) -> tuple[str | None, bool, bool]:
    """One Responses event the client got: (its text, a tool call, the stream's end)."""
    seq = data.get("sequence_number")
    if isinstance(seq, int) and not isinstance(seq, bool):
        state.sequence = max(state.sequence, seq)
    kind = data.get("type") or event
    if kind == "response.created" and isinstance(data.get("response"), dict):
        state.response = dict(data["response"])
    elif kind == "response.output_item.added" and isinstance(data.get("item"), dict):
        item, index = data["item"], data.get("output_index")
        if isinstance(index, int):
            state.next_output = max(state.next_output, index + 1)
        if item.get("type") == "message":
            state.item_id, state.output_index, state.content_index = item.get("id"), index or 0, 0
        elif item.get("type") not in _NOT_TOOLS:
            return None, True, False
    elif kind == "response.content_part.added" and isinstance(data.get("content_index"), int):
        state.content_index = data["content_index"]
    elif kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
        return data["delta"], False, False
    elif kind in ("response.completed", "response.failed", "response.incomplete", "error"):
        return None, False, True
    return None, False, False


def responses_text(state: ResponsesState, text: str) -> bytes:
    out = b""
    if state.item_id is None:  # cut before a message item opened: open one after the last
        state.item_id, state.output_index = f"msg_{uuid.uuid4().hex}", state.next_output
        state.content_index, state.next_output = 0, state.next_output + 1
        out += _event(state, "response.output_item.added", output_index=state.output_index, item={
            "id": state.item_id, "type": "message", "status": "in_progress", "role": "assistant",
            "content": []})
        out += _event(state, "response.content_part.added", **_where(state),
                      part={"type": "output_text", "text": "", "annotations": []})
    return out + _event(state, "response.output_text.delta", **_where(state), delta=text)


def responses_ending(state: ResponsesState, text: str, usage: Usage) -> bytes:
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": state.item_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [part]}
    response = {**state.response, "status": "completed", "output": [item], "usage": {
        "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total}}
    return (_event(state, "response.output_text.done", **_where(state), text=text)
            + _event(state, "response.content_part.done", **_where(state), part=part)
            + _event(state, "response.output_item.done", output_index=state.output_index, item=item)
            + _event(state, "response.completed", response=response))


def see_completions(head: dict[str, Any], data: dict[str, Any]) -> tuple[str | None, bool]:
    """One completions chunk the client got: (its text, the answer's finish)."""
    if not head and "id" in data:
        head.update({k: data.get(k) for k in ("id", "created", "model")})
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    text = choice.get("text")
    return (text if isinstance(text, str) and text else None), bool(choice.get("finish_reason"))


def completions_text(head: dict[str, Any], text: str) -> bytes:
    return sse({**head, "object": "text_completion",
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}]})


def completions_ending(head: dict[str, Any], stop: str, usage: Usage, include_usage: bool) -> bytes:
    out = sse({**head, "object": "text_completion",
               "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": stop}]})
    if include_usage:
        out += sse({**head, "object": "text_completion", "choices": [], "usage": {
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total}})
    return out + DONE


def _where(state: ResponsesState) -> dict[str, Any]:
    return {"item_id": state.item_id, "output_index": state.output_index,
            "content_index": state.content_index}


def _event(state: ResponsesState, kind: str, **data: Any) -> bytes:
    return sse({"type": kind, **data, "sequence_number": state.number()}, kind)


def prefilled_input(body: dict[str, Any], text: str) -> None:
    """A Responses request asking to go on from `text`: the input, then `text` as the
    assistant's (a string input becomes the user's message)."""
    given = body.get("input")
    turns = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    body["input"] = [*turns, {"role": "assistant", "content": text}]


def prefilled_prompt(body: dict[str, Any], text: str) -> None:
    """A completions request going on from `text`: the prompt with the text after it."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        body["prompt"] = prompt + text
    elif isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        body["prompt"] = [prompt[0] + text]


def with_prefill(body: bytes, text: str) -> bytes:
    """An upstream request body asking to go on from the streamed text, in the shape of that
    body (the target's API and dialect): a trailing assistant message (`messages`, both chat
    dialects, a Responses request translated for an Anthropic target too), an assistant input
    item (`input`, Responses), or the prompt with the text after it (`prompt`, completions)."""
    data = orjson.loads(body)
    if text:
        if "messages" in data or ("input" not in data and "prompt" not in data):
            data["messages"] = [*data.get("messages", []), {"role": "assistant", "content": text}]
        elif "input" in data:
            prefilled_input(data, text)
        else:
            prefilled_prompt(data, text)
    return orjson.dumps(data)
