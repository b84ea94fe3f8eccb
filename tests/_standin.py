"""A stand-in provider for the provider-block tests: it answers on ANY path (Azure's
`/openai/v1/...`, Gemini's `/v1beta/openai/...`) and records the method, path, query and
headers of every request, so a test can assert what a real provider would have been sent.

POST `.../chat/completions` answers a short OpenAI stream (or JSON), POST `.../messages` an
Anthropic one; GET `.../models` lists `models` in the dialect the path implies (an Anthropic
list when `anthropic-version` is sent, paginated by `page_size` with `after_id`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

SEEN = web.AppKey("seen", list)  # list[Seen]
SETTINGS = web.AppKey("settings", dict)  # dict[str, Any]
RELEASE = web.AppKey("release", asyncio.Event)  # set when the stand-in stops: hung answers end


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: Any


@dataclass
class StandIn:
    runner: web.AppRunner
    url: str  # http://127.0.0.1:PORT
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def seen(self) -> list[Seen]:
        return self.runner.app[SEEN]

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]

    def model_lists(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.path.endswith("/models")]


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = b""
    for name, data in events:
        if name:
            out += f"event: {name}\n".encode()
        out += b"data: " + (data.encode() if isinstance(data, str) else orjson.dumps(data)) + b"\n\n"
    return out


def _openai_stream(model: str) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model}
    return _sse([
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                      "finish_reason": None}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (None, {**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                                                   "total_tokens": 4}}),
        (None, "[DONE]"),
    ])


def _anthropic_stream(model: str) -> bytes:
    message = {"id": "m1", "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 0}}
    return _sse([
        ("message_start", {"type": "message_start", "message": message}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 1}}),
        ("message_stop", {"type": "message_stop"}),
    ])


async def _any(request: web.Request) -> web.StreamResponse:
    body: Any = None
    if request.can_read_body:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
    request.app[SEEN].append(Seen(request.method, request.path, dict(request.query),
                                  CIMultiDict(request.headers), body))
    settings = request.app[SETTINGS]
    if request.method == "GET" and request.path.endswith("/models"):
        if settings.get("models_hang"):
            await request.app[RELEASE].wait()  # no answer until the stand-in stops
        if settings.get("models_status", 200) != 200:
            return web.json_response({"error": {"message": "down"}}, status=settings["models_status"])
        names: list[str] = list(settings.get("models", ()))
        if "anthropic-version" in request.headers:
            after = request.query.get("after_id")
            start = names.index(after) + 1 if after in names else 0
            size = int(settings.get("page_size", 1000))
            page = names[start:start + size]
            return web.json_response({
                "data": [{"type": "model", "id": n, "display_name": n,
                          "created_at": "2025-01-01T00:00:00Z"} for n in page],
                "has_more": start + size < len(names),
                "first_id": page[0] if page else None, "last_id": page[-1] if page else None})
        return web.json_response({"object": "list", "data": [
            {"id": settings.get("id_prefix", "") + n, "object": "model", "created": 0,
             "owned_by": "standin"} for n in names]})
    if request.method != "POST" or not isinstance(body, dict):
        return web.json_response({"error": {"message": "not found"}}, status=404)
    model = str(body.get("model", ""))
    anthropic = request.path.endswith("/messages")
    if body.get("stream") is not True:
        if anthropic:
            return web.json_response({
                "id": "m1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 1}})
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
    stream = _anthropic_stream(model) if anthropic else _openai_stream(model)
    return web.Response(body=stream, content_type="text/event-stream")


@asynccontextmanager
async def standin(**settings: Any) -> AsyncIterator[StandIn]:
    """`models=[...]`, `page_size=N`, `models_status=503`, `models_hang=True`,
    `id_prefix="models/"`; the
    settings dict stays live (a test may change it between refreshes)."""
    app = web.Application()
    app[SEEN] = []
    app[SETTINGS] = settings
    app[RELEASE] = release = asyncio.Event()
    app.router.add_route("*", "/{tail:.*}", _any)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield StandIn(runner, f"http://127.0.0.1:{port}", settings)
    finally:
        release.set()
        await runner.cleanup()
