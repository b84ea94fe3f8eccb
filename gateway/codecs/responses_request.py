"""An OpenAI Responses request (`POST /v1/responses`) -> the Anthropic Messages request that
asks the same, by way of the chat-completions request it equals (`chat_request` then does the
Anthropic side: images, tools, tool choice, merging turns).

Rules:
- `input` is a string (one user message) or a list of items: messages (`role` user, assistant,
  system or developer; content a string or `input_text` / `output_text` / `refusal` /
  `input_image` parts), `function_call` (an assistant tool call) and `function_call_output`
  (its result). `instructions` comes first in `system`.
- Mapped: `max_output_tokens` -> `max_tokens`, function `tools` (flat: name, description,
  parameters), `tool_choice`, `parallel_tool_calls`, `text.format` json_schema -> structured
  output, `user` / `safety_identifier` -> `metadata.user_id`. Passed as they are: model,
  temperature, top_p, stream.
- Kept for the answer only (`Echo`), never sent: `metadata` and the request's own settings
  that the response object repeats.
- Ignored, nothing to carry: `store: false`, `service_tier`, `prompt_cache_key`, `truncation:
  "disabled"`, `include: []`, `reasoning` (Claude is not asked to think here), `stream_options`.
- What cannot be carried is a 400 naming the field: `previous_response_id`, `conversation`,
  `store: true`, `background: true`, `prompt`, a non-function tool (web_search, file_search,
  ...), an item type other than those above, `input_file` / `file_id` parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import BadRequest
from .chat_request import chat_to_messages

#: fields that would need state the gateway does not keep, or a provider feature Claude lacks
_CANNOT_CARRY = ("previous_response_id", "conversation", "prompt")


@dataclass(frozen=True, slots=True)
class Echo:
    """What a Responses answer repeats of its request."""

    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[Any] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    user: str | None = None


def responses_to_messages(body: dict[str, Any], default_max_tokens: int) -> tuple[dict[str, Any], Echo]:
    """(the Anthropic Messages body, without `model`; what the answer echoes)."""
    _refuse_what_cannot_be_carried(body)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("'instructions' must be a string")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    messages += _messages(body.get("input"))
    if not any(m["role"] != "system" for m in messages):
        raise BadRequest("'input' must hold at least one message")
    chat: dict[str, Any] = {"messages": messages}
    limit = body.get("max_output_tokens")
    if limit is not None:
        chat["max_completion_tokens"] = limit
    for key in ("temperature", "top_p", "stream", "parallel_tool_calls", "tool_choice"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if isinstance(chat.get("tool_choice"), dict):
        chat["tool_choice"] = _named_choice(chat["tool_choice"])
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be a list")
        chat["tools"] = [_function_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        chat["user"] = user
    schema = _json_schema(body.get("text"))
    if schema is not None:
        chat["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
    request = chat_to_messages(chat, default_max_tokens)
    metadata = body.get("metadata")
    echo = Echo(
        instructions=instructions if isinstance(instructions, str) else None,
        max_output_tokens=limit if isinstance(limit, int) else None,
        temperature=_number(body.get("temperature")), top_p=_number(body.get("top_p")),
        tools=tools if isinstance(tools, list) else [],
        tool_choice=body.get("tool_choice", "auto"),
        parallel_tool_calls=body.get("parallel_tool_calls") is not False,
        metadata=metadata if isinstance(metadata, dict) else {},
        text=body["text"] if isinstance(body.get("text"), dict) else {"format": {"type": "text"}},
        user=user if isinstance(user, str) else None,
    )
    return request, echo


def _refuse_what_cannot_be_carried(body: dict[str, Any]) -> None:
    for name in _CANNOT_CARRY:
        if body.get(name) is not None:
            raise BadRequest(f"'{name}' cannot be carried to this model (its upstream is not OpenAI's "
                             "Responses API, and the gateway keeps no responses)")
    if body.get("store") is True:
        raise BadRequest("'store': true cannot be carried to this model (the gateway keeps no "
                         "responses); send store: false")
    if body.get("background") is True:
        raise BadRequest("'background': true cannot be carried to this model")
    include = body.get("include")
    if include not in (None, []):
        raise BadRequest("'include' cannot be carried to this model")
    if body.get("truncation") not in (None, "disabled"):
        raise BadRequest("'truncation' cannot be carried to this model (only \"disabled\")")


def _messages(given: object) -> list[dict[str, Any]]:
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if not isinstance(given, list):
        raise BadRequest("'input' must be a string or a list of input items")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(given):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            out.append(_call(item, where))
        elif kind == "function_call_output":
            out.append(_call_output(item, where))
        else:
            raise BadRequest(f"{where}.type {kind!r} cannot be carried to this model")
    return out


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise BadRequest(f"{where}.role must be user, assistant, system or developer")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise BadRequest(f"{at} must be a content part object")
        kind = part.get("type")
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and role == "user":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise BadRequest(f"{at}.image_url must be a URL (file_id cannot be carried to this model)")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise BadRequest(f"{at} must be an input_text, output_text, refusal or (from the user) "
                             "input_image part")
    return {"role": role, "content": parts}


def _call(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "{}")
    if not (isinstance(call_id, str) and call_id and isinstance(name, str) and isinstance(arguments, str)):
        raise BadRequest(f"{where} (function_call) needs call_id, name and arguments as strings")
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function",
                            "function": {"name": name, "arguments": arguments or "{}"}}]}


def _call_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}.call_id must be a non-empty string")
    if isinstance(output, list):  # text parts
        texts = []
        for j, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text") \
                    or not isinstance(part.get("text"), str):
                raise BadRequest(f"{where}.output[{j}] must be a text part")
            texts.append({"type": "text", "text": part["text"]})
        return {"role": "tool", "tool_call_id": call_id, "content": texts}
    if not isinstance(output, str):
        output = orjson.dumps(output).decode() if output is not None else ""
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _function_tool(tool: object, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise BadRequest(f"{where} must be an object")
    kind = tool.get("type")
    if kind != "function":
        raise BadRequest(f"{where}.type {kind!r} cannot be carried to this model (only function tools)")
    if not isinstance(tool.get("name"), str):
        raise BadRequest(f"{where}.name must be a string")
    function = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _named_choice(choice: dict[str, Any]) -> dict[str, Any]:
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadRequest("'tool_choice' cannot be carried to this model (only auto, none, required or "
                     "a named function)")


def _json_schema(text: object) -> dict[str, Any] | None:
    spec = text.get("format") if isinstance(text, dict) else None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema":
        return None
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise BadRequest("'text.format.schema' must be a JSON schema object")
    return schema


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
