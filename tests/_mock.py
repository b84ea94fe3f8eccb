"""Helpers for the mock upstream's own tests: a running mock on a real socket, and SSE parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.mock import MOCK_STATE, MockSettings, MockState, start_mock

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
RESPONSES = "/v1/responses"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
COUNT_TOKENS = "/v1/messages/count_tokens"
HELLO: Any = [{"role": "user", "content": "hello there mock"}]
SSE = list[tuple[str | None, str]]


@dataclass
class Mock:
    url: str
    state: MockState
    http: aiohttp.ClientSession

    def post(self, path: str, body: Any, **headers: str) -> Any:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.http.post(self.url + path, data=data, headers=headers)

    async def events(self, path: str, body: Any, **headers: str) -> SSE:
        """(event name, data) of each SSE event, parsed the standard way (data lines joined)."""
        async with self.post(path, body, **headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            return parse_sse((await resp.read()).decode())

    async def payloads(self, path: str, body: Any, **headers: str) -> list[Any]:
        """The JSON payload of each SSE event (a bare `[DONE]` as the string)."""
        return [data if data == "[DONE]" else orjson.loads(data) for _, data in await self.events(path, body, **headers)]


def parse_sse(text: str) -> SSE:
    events: SSE = []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for block in filter(None, text.split("\n\n")):
        name, data = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append((name, "\n".join(data)))
    return events


def openai_text(events: SSE) -> str:
    chunks = [orjson.loads(data) for _, data in events if data != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def chat(stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {"model": "mock-1", "messages": HELLO, "stream": stream, **extra}


@asynccontextmanager
async def running_mock(**settings: Any) -> AsyncIterator[Mock]:
    runner: web.AppRunner | None = None
    async with aiohttp.ClientSession() as http:
        try:
            runner, url = await start_mock(settings=MockSettings(**settings))
            yield Mock(url, runner.app[MOCK_STATE], http)
        finally:
            if runner is not None:
                await runner.cleanup()
