"""The built-in mock LLM upstream: OpenAI and Anthropic dialects over real sockets, with faults.

Answers are deterministic (words picked by a hash of the last user message) and
every stream is recorded on the app's `MockState`, so tests can see what was
written, when, and whether the peer went away.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.mock.faults import Faults, FaultSpecError, fault_spec, parse_faults
from gateway.mock.shapes import (
    ANTHROPIC,
    OPENAI,
    Answer,
    Dialect,
    Event,
    build_answer,
    fragments,
    frame,
    invalid_reason,
)


@dataclass(frozen=True)
class MockSettings:
    first_byte_delay: float = 0.0  # seconds before the first body byte (headers go at once)
    tokens_per_second: float = 0.0  # pacing of content chunks; 0 = as fast as possible
    words: int = 20  # completion length in words (= content chunks = completion tokens)
    api_key: str | None = None  # when set, any other key gets 401


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any] | None  # None when not a JSON object
    fault: str
    request_id: str | None


@dataclass
class StreamRecord:
    path: str
    fault: str
    request_id: str | None
    sent_at: list[float] = field(default_factory=list)  # monotonic, after each event's drain
    chunks_sent: int = 0  # SSE events fully written (== len(sent_at))
    completed: bool = False
    client_closed: bool = False
    closed_at: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class MockState:
    requests: list[RecordedRequest] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    # fail=N bookkeeping: attempts seen per (fault spec, x-request-id)
    attempts: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def reset(self) -> None:
        self.requests.clear()
        self.streams.clear()
        self.attempts.clear()

    def stats(self) -> dict[str, Any]:
        streams = [
            {
                "path": s.path,
                "fault": s.fault,
                "request_id": s.request_id,
                "chunks_sent": s.chunks_sent,
                "completed": s.completed,
                "client_closed": s.client_closed,
                "ended": s.ended.is_set(),
            }
            for s in self.streams
        ]
        return {"requests": len(self.requests), "streams": streams}


MOCK_STATE = web.AppKey("mock_state", MockState)
MOCK_SETTINGS = web.AppKey("mock_settings", MockSettings)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _error(dialect: Dialect, status: int, message: str, faults: Faults | None = None) -> web.Response:
    headers = {}
    if faults is not None and faults.retry_after is not None:
        headers["Retry-After"] = f"{faults.retry_after:g}"
    return _json(dialect.error(status, message), status, headers)


# --- handlers ----------------------------------------------------------------------------


async def _complete(request: web.Request, dialect: Dialect, prefix: str) -> web.StreamResponse:
    state, settings = request.app[MOCK_STATE], request.app[MOCK_SETTINGS]
    try:
        raw = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raw = None
    body = raw if isinstance(raw, dict) else None
    spec = fault_spec(request.headers.get("x-mock-fault"), body.get("model") if body else None)
    request_id = request.headers.get("x-request-id")
    headers = {k.lower(): v for k, v in request.headers.items()}
    state.requests.append(RecordedRequest(request.path, headers, body, spec, request_id))

    if settings.api_key is not None and dialect.api_key(request) != settings.api_key:
        return _error(dialect, 401, "invalid api key")
    if body is None:
        return _error(dialect, 400, "request body is not a JSON object")
    max_tokens = dialect.max_tokens(body)
    if (problem := invalid_reason(body, max_tokens)) is not None:
        return _error(dialect, 400, problem)
    try:
        faults = parse_faults(spec)
    except FaultSpecError as exc:
        return _error(dialect, 400, str(exc))

    if faults.status is not None:
        return _error(dialect, faults.status, f"mock fault: status={faults.status}", faults)
    if faults.fail:
        key = (spec, request_id)
        state.attempts[key] = attempt = state.attempts.get(key, 0) + 1
        if attempt <= faults.fail:
            message = f"mock fault: attempt {attempt} of fail={faults.fail}"
            return _error(dialect, faults.fail_status, message, faults)

    words = faults.words if faults.words is not None else settings.words
    answer = build_answer(body, len(state.requests), words, max_tokens, prefix)
    delay = faults.delay if faults.delay is not None else settings.first_byte_delay
    if body.get("stream") is not True:
        if faults.hang:
            await asyncio.Future()  # no answer until the client goes away (handler cancelled)
        await asyncio.sleep(delay)
        if faults.drop is not None and request.transport is not None:
            request.transport.abort()
        return _json(dialect.completion(answer))

    record = StreamRecord(request.path, spec, request_id)
    state.streams.append(record)
    tps = faults.tps if faults.tps is not None else settings.tokens_per_second
    try:
        return await _stream(request, dialect, answer, faults, record, delay, tps)
    except asyncio.CancelledError:
        record.client_closed = True
        raise
    finally:
        record.closed_at = time.monotonic()
        record.ended.set()


async def _stream(
    request: web.Request,
    dialect: Dialect,
    answer: Answer,
    faults: Faults,
    record: StreamRecord,
    delay: float,
    tps: float,
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})

    async def send(event: Event) -> None:
        data = frame(event, faults.newline, faults.multiline)
        for piece in fragments(data) if faults.fragment else (data,):
            await resp.write(piece)
            await request.writer.drain()
            if faults.fragment:
                await asyncio.sleep(0)  # let the peer read each piece on its own
        record.sent_at.append(time.monotonic())
        record.chunks_sent += 1

    async def at(k: int) -> bool:
        """Faults due after k content chunks; False when the connection was dropped."""
        if faults.silence is not None and faults.silence[1] == k:
            await asyncio.sleep(faults.silence[0])
        if faults.garbage == k:
            await send((None, b"}{garbage"))
        if faults.drop == k and request.transport is not None:
            request.transport.abort()
            return False
        return True

    try:
        if faults.hang:
            await asyncio.Future()  # no headers, until the client goes away
        await resp.prepare(request)  # sends the headers at once
        if request.transport is not None:
            # Any byte the kernel did not take pauses the writer, so drain() returns only
            # once the event is really on the socket.
            request.transport.set_write_buffer_limits(high=0)
        if delay:
            await asyncio.sleep(delay)
        for event in dialect.head(answer):
            await send(event)
        for k, piece in enumerate(answer.pieces()):
            if not await at(k):
                return resp
            if k and tps:
                await asyncio.sleep(1 / tps)
            await send(dialect.content(answer, piece))
        if not await at(len(answer.words)):
            return resp
        for event in dialect.tail(answer):
            await send(event)
        await resp.write_eof()
        record.completed = True
    except ConnectionResetError:  # the peer went away mid-write
        record.client_closed = True
    return resp


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, OPENAI, "chatcmpl-mock")


async def _messages(request: web.Request) -> web.StreamResponse:
    return await _complete(request, ANTHROPIC, "msg_mock")


async def _models(request: web.Request) -> web.Response:
    key = request.app[MOCK_SETTINGS].api_key
    if key is not None and ANTHROPIC.api_key(request) != key:  # either header is fine
        return _error(OPENAI, 401, "invalid api key")
    model = {
        "id": "mock-1",
        "object": "model",
        "created": 0,
        "owned_by": "mock",
        "type": "model",
        "display_name": "Mock 1",
        "created_at": "2024-01-01T00:00:00Z",
    }
    body = {
        "object": "list",
        "data": [model],
        "has_more": False,
        "first_id": "mock-1",
        "last_id": "mock-1",
    }
    return _json(body)


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[MOCK_STATE].stats())


async def _reset(request: web.Request) -> web.Response:
    request.app[MOCK_STATE].reset()
    return web.Response(status=204)


# --- app and runners ---------------------------------------------------------------------


def build_mock_app(settings: MockSettings | None = None) -> web.Application:
    app = web.Application()
    app[MOCK_SETTINGS] = settings or MockSettings()
    app[MOCK_STATE] = MockState()
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/_mock/stats", _stats)
    app.router.add_post("/_mock/reset", _reset)
    return app


async def start_mock(
    host: str = "127.0.0.1", port: int = 0, settings: MockSettings | None = None
) -> tuple[web.AppRunner, str]:
    """Serve the mock on a real socket; returns the runner (call `cleanup()`) and base URL."""
    runner = web.AppRunner(build_mock_app(settings), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    bound = runner.addresses[0][1]
    return runner, f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"


def run_mock(host: str, port: int, settings: MockSettings) -> None:
    """Blocking: serve the mock until interrupted (`llm-gateway mock-upstream`)."""
    web.run_app(
        build_mock_app(settings),
        host=host,
        port=port,
        handler_cancellation=True,
        access_log=None,
        backlog=1024,
    )
