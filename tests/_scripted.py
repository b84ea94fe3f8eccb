"""A hostile stand-in upstream that answers each request with the exact bytes a test scripts
for its model name: a stream cut mid-line, a complete answer without its end marker, model
text that looks like a marker, an error event that echoes the key it was sent.

`scripts[model]` is a `Script`; a continuation (the last message or input item is the
assistant's, or a completions prompt that extends an earlier one) of a model uses
`scripts[model + "#cont"]` when there is one. Every request is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

SCRIPTS = web.AppKey("scripts", dict)  # dict[str, Script]
SEEN = web.AppKey("seen", list)  # list[Asked]


@dataclass
class Script:
    chunks: list[bytes] = field(default_factory=list)
    status: int = 200
    #: "eof": end the body cleanly after the chunks; "abort": reset the connection
    end: str = "eof"
    content_type: str = "text/event-stream"
    #: {key} in a chunk is replaced by the credential the request carried (an echo attack)
    echo: bool = False


@dataclass
class Asked:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    #: a continuation: the last message (or Responses input item) is the assistant's, or a
    #: completions prompt that extends an earlier one of the same model
    continuation: bool = False


def _continues(body: dict[str, Any], earlier: list[Asked]) -> bool:
    for turns in (body.get("messages"), body.get("input")):
        if isinstance(turns, list) and turns and isinstance(turns[-1], dict):
            return turns[-1].get("role") == "assistant"
    prompt = body.get("prompt")
    return isinstance(prompt, str) and any(
        a.body.get("model") == body.get("model") and isinstance(a.body.get("prompt"), str)
        and prompt != a.body["prompt"] and prompt.startswith(a.body["prompt"]) for a in earlier)


@dataclass
class Scripted:
    runner: web.AppRunner
    url: str
    scripts: dict[str, Script]

    @property
    def seen(self) -> list[Asked]:
        return self.runner.app[SEEN]

    def asked(self, model: str) -> list[Asked]:
        return [a for a in self.seen if a.body.get("model") == model]


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    body = data.encode() if isinstance(data, str) else orjson.dumps(data)
    return head + b"data: " + body + b"\n\n"


def chat_chunk(text: str | None = None, *, finish: str | None = None, role: bool = False,
               usage: dict[str, int] | None = None) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if text is not None:
        delta["content"] = text
    head = {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "s"}
    if usage is not None:
        return sse({**head, "choices": [], "usage": usage})
    return sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def anthropic_start() -> bytes:
    message = {"id": "msg_s1", "type": "message", "role": "assistant", "model": "s", "content": [],
               "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 0}}
    return (sse({"type": "message_start", "message": message}, "message_start")
            + sse({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}, "content_block_start"))


def anthropic_text(text: str) -> bytes:
    return sse({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}, "content_block_delta")


def anthropic_finish(output_tokens: int = 2) -> bytes:
    return (sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": output_tokens}}, "message_delta"))


ANTHROPIC_END = sse({"type": "message_stop"}, "message_stop")


def responses_event(kind: str, seq: int, **data: Any) -> bytes:
    return sse({"type": kind, "sequence_number": seq, **data}, kind)


async def _answer(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    body = orjson.loads(raw) if raw else {}
    seen = request.app[SEEN]
    asked = Asked(request.path, {k.lower(): v for k, v in request.headers.items()}, body,
                  _continues(body, seen))
    seen.append(asked)
    model = str(body.get("model", ""))
    scripts = request.app[SCRIPTS]
    script = scripts.get(model + "#cont") if asked.continuation else None
    script = script or scripts.get(model)
    if script is None:
        return web.json_response({"error": {"message": f"no script for {model!r}"}}, status=404)
    if script.status != 200:
        return web.Response(status=script.status, body=b"".join(script.chunks),
                            content_type="application/json")
    key = asked.headers.get("authorization") or asked.headers.get("x-api-key") or ""
    response = web.StreamResponse(headers={"Content-Type": script.content_type})
    await response.prepare(request)
    for chunk in script.chunks:
        if script.echo:
            chunk = chunk.replace(b"{key}", key.encode())
        await response.write(chunk)
    if script.end == "abort" and request.transport is not None:
        request.transport.abort()
        return response
    await response.write_eof()
    return response


@asynccontextmanager
async def scripted(scripts: dict[str, Script]) -> AsyncIterator[Scripted]:
    """The stand-in on a free port; `scripts` stays live (a test may add to it)."""
    app = web.Application()
    app[SCRIPTS] = scripts
    app[SEEN] = []
    app.router.add_post("/{tail:.*}", _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Scripted(runner, f"http://127.0.0.1:{port}", scripts)
    finally:
        await runner.cleanup()
