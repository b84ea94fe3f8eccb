"""An OpenAI chat-completions request -> the Anthropic Messages request that asks the same.

Rules:
- system/developer messages, wherever they stand, become `system` in order: one string message
  stays a string, anything else becomes text blocks.
- user/assistant/tool turns become Anthropic turns; a `tool` message is a user turn holding a
  `tool_result` block; consecutive turns of the same role are merged (Anthropic requires
  alternation), so tool results and the user's next words share one user turn, results first.
- Empty text is dropped (Anthropic refuses empty text blocks), and so is a turn left empty.
- response_format json_schema -> `output_config.format` (structured outputs); json_object has
  no counterpart (OpenAI already requires the prompt to ask for JSON) and is dropped, as is text.
- Passed as they are: model, temperature, top_p, stream. Mapped: max_completion_tokens /
  max_tokens, stop, tools, tool_choice, parallel_tool_calls, user.
- Dropped, no counterpart: frequency_penalty, presence_penalty, logit_bias, logprobs,
  top_logprobs, seed, store, metadata, service_tier, modalities, audio, prediction,
  reasoning_effort, web_search_options, stream_options (the stream codec answers include_usage).
- What cannot be said to Anthropic at all (n > 1, audio or file-id parts, legacy functions)
  is a BadRequest naming the field, as is any malformed message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from ..errors import BadRequest

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)

_CHOICES: Mapping[str, str] = MappingProxyType({"auto": "auto", "none": "none", "required": "any"})

Turn = tuple[str, str | list[dict[str, Any]]]  # (role, content)


def chat_to_messages(body: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise BadRequest("'n' above 1 is not supported for this model")
    system: list[dict[str, Any]] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system += _text_blocks(message.get("content"), where)
        elif role == "user":
            _append(turns, "user", _user_content(message.get("content"), where))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_content(message, where))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, where)])
        else:
            raise BadRequest(f"{where}.role must be system, developer, user, assistant or tool")
    request: dict[str, Any] = {}
    if "model" in body:
        request["model"] = body["model"]
    if system:
        one = len(system) == 1 and sum(m.get("role") in ("system", "developer") for m in messages) == 1
        request["system"] = system[0]["text"] if one else system
    request["messages"] = [{"role": role, "content": content} for role, content in turns]
    request["max_tokens"] = _max_tokens(body, default_max_tokens)
    stop = body.get("stop")
    if isinstance(stop, str):
        request["stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if stop:
            request["stop_sequences"] = stop
    elif stop is not None:
        raise BadRequest("'stop' must be a string or a list of strings")
    for key in ("temperature", "top_p", "stream"):
        if body.get(key) is not None:
            request[key] = body[key]
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be a list")
        request["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and tools:
        request["tool_choice"] = choice
    output = _output_format(body.get("response_format"))
    if output is not None:
        request["output_config"] = {"format": output}
    return request


def _append(turns: list[Turn], role: str, content: str | list[dict[str, Any]]) -> None:
    if not content:
        return
    if turns and turns[-1][0] == role:
        merged = _as_blocks(turns[-1][1]) + _as_blocks(content)
        turns[-1] = (role, merged)
    else:
        turns.append((role, content))


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _text_blocks(content: object, where: str) -> list[dict[str, Any]]:
    """Content that may only be text (system, tool results): a string or text parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of text parts")
    blocks = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BadRequest(f"{where}.content[{j}] must be a text part")
        if part["text"]:
            blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _user_content(content: object, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content parts")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise BadRequest(f"{at} must be a content part object")
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), at))
        elif kind == "file":
            blocks.append(_file(part.get("file"), at))
        elif kind == "input_audio":
            raise BadRequest(f"{at}: audio input is not supported for this model")
        else:
            raise BadRequest(f"{at} must be a text, image_url or file part")
    return blocks


def _image(image: object, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise BadRequest(f"{where}.image_url.url must be a string")
    found = _DATA_URL.fullmatch(url)
    if found:
        source = {"type": "base64", "media_type": found["type"], "data": found["data"]}
        return {"type": "image", "source": source}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest(f"{where}.image_url.url must be an http(s) URL or a base64 data URL")


def _file(file: object, where: str) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, dict) else None
    found = _DATA_URL.fullmatch(data) if isinstance(data, str) else None
    if found is None or found["type"] != "application/pdf":
        raise BadRequest(f"{where}: only inline PDF files (file_data as a base64 data URL) are supported")
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                           "data": found["data"]}}


def _assistant_content(message: dict[str, Any], where: str) -> str | list[dict[str, Any]]:
    if message.get("function_call") is not None:
        raise BadRequest(f"{where}.function_call is not supported; use tool_calls")
    content = message.get("content")
    if content is None:
        blocks: list[dict[str, Any]] = []
    elif isinstance(content, str):
        blocks = [{"type": "text", "text": content}] if content else []
    elif isinstance(content, list):
        blocks = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get(kind) if isinstance(part, dict) and kind in ("text", "refusal") else None
            if not isinstance(text, str):
                raise BadRequest(f"{where}.content[{j}] must be a text or refusal part")
            if text:
                blocks.append({"type": "text", "text": text})
    else:
        raise BadRequest(f"{where}.content must be a string, a list of parts or null")
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise BadRequest(f"{where}.tool_calls must be a list")
    for j, call in enumerate(calls or []):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    if isinstance(content, str) and not calls:
        return content
    return blocks


def _tool_use(call: object, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(function, dict):
        raise BadRequest(f"{where} must be an object with an id and a function")
    name, arguments = function.get("name"), function.get("arguments") or "{}"
    if not isinstance(name, str) or not isinstance(arguments, str):
        raise BadRequest(f"{where}.function needs a name and its arguments as a string")
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{where}.function.arguments is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"{where}.function.arguments must be a JSON object")
    return {"type": "tool_use", "id": call["id"], "name": name, "input": parsed}


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}.tool_call_id must be a non-empty string")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        result["content"] = content
    elif content is not None:
        result["content"] = _text_blocks(content, where)
    return result


def _max_tokens(body: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"'{key}' must be a positive integer")
        return value
    return default


def _tool(tool: object, where: str) -> dict[str, Any]:
    is_function = isinstance(tool, dict) and tool.get("type", "function") == "function"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not is_function or not isinstance(function, dict):
        raise BadRequest(f"{where} must be a function tool")
    if not isinstance(function.get("name"), str):
        raise BadRequest(f"{where}.function.name must be a string")
    schema = function.get("parameters")
    if schema is not None and not isinstance(schema, dict):
        raise BadRequest(f"{where}.function.parameters must be a JSON schema object")
    out: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    out["input_schema"] = schema or {"type": "object", "properties": {}}
    return out


def _tool_choice(choice: object, parallel: object) -> dict[str, Any] | None:
    """tool_choice auto/none/required/named -> auto/none/any/tool; parallel_tool_calls: false ->
    disable_parallel_tool_use (on auto when no choice was given)."""
    if choice is None and parallel is False:
        choice = "auto"
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _CHOICES:
        out: dict[str, Any] = {"type": _CHOICES[choice]}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and isinstance(
            choice["function"].get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise BadRequest("'tool_choice' must be auto, none, required or a named function")
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _output_format(response_format: object) -> dict[str, Any] | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise BadRequest("'response_format.json_schema.schema' must be a JSON schema object")
    return {"type": "json_schema", "schema": schema}
