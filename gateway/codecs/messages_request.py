"""An Anthropic Messages request -> the OpenAI chat-completions request that asks the same.

Rules:
- `system` -> a first system message (a string stays a string, blocks become text parts).
- A user turn's tool_result blocks become `tool` messages placed before the rest of the turn
  (OpenAI wants them right after the assistant's tool_calls); their text only, `is_error` has
  no counterpart. Images -> image_url (base64 as a data URL), PDF documents -> file parts.
- An assistant turn's text -> content, tool_use -> tool_calls (input as JSON arguments);
  thinking and redacted_thinking are dropped (an OpenAI model cannot read them back).
- max_tokens -> max_tokens (what OpenAI-compatible servers widely accept), stop_sequences ->
  stop, metadata.user_id -> user, tool_choice any -> required, tool -> named function,
  disable_parallel_tool_use -> parallel_tool_calls false, output_config.format -> response_format
  json_schema; temperature, top_p, stream as they are, and a stream asks for usage
  (`stream_options.include_usage`) so tokens are counted.
- Dropped, no counterpart: top_k, thinking, output_config.effort, service_tier, container,
  mcp_servers, cache_control on blocks, citations.
- Server tools (web search, code execution, ...) and content an OpenAI upstream cannot take are
  a BadRequest naming the field, as is any malformed message.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import BadRequest


def messages_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise BadRequest("'messages' must be a non-empty list")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str):
        if system:
            messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        messages.append({"role": "system", "content": _text_parts(system, "system")})
    elif system is not None:
        raise BadRequest("'system' must be a string or a list of text blocks")
    for i, turn in enumerate(turns):
        where = f"messages[{i}]"
        if not isinstance(turn, dict):
            raise BadRequest(f"{where} must be an object")
        if turn.get("role") == "user":
            messages += _user(turn.get("content"), where)
        elif turn.get("role") == "assistant":
            messages.append(_assistant(turn.get("content"), where))
        else:
            raise BadRequest(f"{where}.role must be user or assistant")
    request: dict[str, Any] = {}
    if "model" in body:
        request["model"] = body["model"]
    request["messages"] = messages
    if body.get("max_tokens") is not None:
        request["max_tokens"] = body["max_tokens"]
    stop = body.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest("'stop_sequences' must be a list of strings")
        request["stop"] = stop
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            request[key] = body[key]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        request["user"] = metadata["user_id"]
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be a list")
        request["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
        request.update(_tool_choice(body.get("tool_choice")))
    output = body.get("output_config")
    schema_format = output.get("format") if isinstance(output, dict) else None
    if isinstance(schema_format, dict) and isinstance(schema_format.get("schema"), dict):
        request["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": schema_format["schema"], "strict": True}}
    if body.get("stream") is not None:
        request["stream"] = body["stream"]
        if body["stream"] is True:
            request["stream_options"] = {"include_usage": True}
    return request


def _text_parts(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    parts = []
    for j, block in enumerate(blocks):
        text = block.get("text") if isinstance(block, dict) and block.get("type") == "text" else None
        if not isinstance(text, str):
            raise BadRequest(f"{where}[{j}] must be a text block")
        parts.append({"type": "text", "text": text})
    return parts


def _user(content: object, where: str) -> list[dict[str, Any]]:
    """One user turn -> its tool messages first, then one user message with the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of blocks")
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(block, dict):
            raise BadRequest(f"{at} must be a content block object")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _source_url(block.get("source"), at)}})
        elif kind == "document":
            url = _source_url(block.get("source"), at)
            parts.append({"type": "file", "file": {"filename": "document.pdf", "file_data": url}})
        elif kind == "tool_result":
            tools.append(_tool_message(block, at))
        else:
            raise BadRequest(f"{at} must be a text, image, document or tool_result block")
    messages = list(tools)
    if parts:
        messages.append({"role": "user", "content": parts})
    return messages


def _source_url(source: object, where: str) -> str:
    if isinstance(source, dict) and source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return f"data:{media};base64,{data}"
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise BadRequest(f"{where}.source must be a base64 or url source")


def _tool_message(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}.tool_use_id must be a non-empty string")
    content = block.get("content", "")
    if isinstance(content, list):
        content = _text_parts(content, f"{where}.content")
    elif not isinstance(content, str):
        raise BadRequest(f"{where}.content must be a string or a list of text blocks")
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _assistant(content: object, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(block, dict):
            raise BadRequest(f"{at} must be a content block object")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise BadRequest(f"{at} needs a string id and name")
            arguments = orjson.dumps(block.get("input", {})).decode()
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": arguments}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise BadRequest(f"{at} must be a text, tool_use or thinking block")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: object, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise BadRequest(f"{where} must be an object with a name")
    if tool.get("type") not in (None, "custom"):
        raise BadRequest(f"{where}: server tool {tool.get('type')!r} is not supported for this model")
    function: dict[str, Any] = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise BadRequest(f"{where}.input_schema must be a JSON schema object")
    function["parameters"] = schema
    return {"type": "function", "function": function}


def _tool_choice(choice: object) -> dict[str, Any]:
    """auto/any/tool/none -> tool_choice, and disable_parallel_tool_use -> parallel_tool_calls."""
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    out: dict[str, Any] = {}
    if kind in ("auto", "none"):
        out["tool_choice"] = kind
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise BadRequest("'tool_choice' must be auto, any, tool (with a name) or none")
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out
