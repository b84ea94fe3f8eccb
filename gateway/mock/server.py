"""The built-in mock LLM upstream: OpenAI and Anthropic APIs over real sockets, with faults.

Answers are deterministic (words picked by a hash of the last user message) and
every request and stream is recorded on the app's `MockState`, so tests can see what
was written, when, and whether the peer went away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from .answers import Ask, Conversation, build_answer
from .extra import COMPLETIONS_SHAPE, count_tokens, embedding_inputs, embeddings_body
from .faults import Faults, FaultSpecError, fault_spec, parse_faults
from .responses import RESPONSES_SHAPE
from .shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, Shape
from .state import (
    MOCK_SETTINGS,
    MOCK_STATE,
    MockSettings,
    MockState,
    RecordedRequest,
    StreamRecord,
)
from .stream import write_stream
from .wire import drip, echoed_keys, error_response, html_page, json_response, send_json

__all__ = [
    "MOCK_SETTINGS",
    "MOCK_STATE",
    "MockSettings",
    "MockState",
    "build_mock_app",
    "run_mock",
    "start_mock",
]


@dataclass(frozen=True)
class Call:
    """A request the mock will answer: its body, what it reads as, its faults."""

    body: dict[str, Any]
    read: Any  # what the endpoint's reader made of the body
    faults: Faults
    spec: str
    request_id: str | None
    number: int  # requests served so far, this one included


Reader = Callable[[dict[str, Any]], Any]  # body -> what it means, or a str saying why it is a 400


def chat_reader(shape: Shape) -> Reader:
    def read(body: dict[str, Any]) -> Conversation | str:
        max_tokens = shape.max_tokens(body)
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return "'max_tokens' must be a positive integer"
        return shape.read(body)

    return read


async def _admit(request: web.Request, shape: Shape, reader: Reader) -> Call | web.StreamResponse:
    """Record the request, then answer it here when auth, validation or a fault says so."""
    state, settings = request.app[MOCK_STATE], request.app[MOCK_SETTINGS]
    try:
        raw = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raw = None
    body = raw if isinstance(raw, dict) else None
    spec = fault_spec(request.headers.get("x-mock-fault"), body.get("model") if body else None)
    request_id = request.headers.get("x-request-id")
    headers = {k.lower(): v for k, v in request.headers.items()}
    number = state.record_request(
        RecordedRequest(request.path, headers, body, spec, request_id, dict(request.query)))

    if settings.api_key is not None and shape.api_key(request) != settings.api_key:
        return error_response(shape, 401, "invalid api key")
    if body is None:
        return error_response(shape, 400, "request body is not a JSON object")
    if isinstance(read := reader(body), str):
        return error_response(shape, 400, read)
    try:
        faults = parse_faults(spec)
    except FaultSpecError as exc:
        return error_response(shape, 400, str(exc))

    if faults.no_prefill and isinstance(read, Conversation) and read.messages[-1].get("role") == "assistant":
        return error_response(
            shape, 400, "prefill not supported: the conversation must end with a user message"
        )
    if faults.echo_key:
        return error_response(shape, 400, echoed_keys(request))
    if faults.context_overflow:
        return json_response(shape.context_overflow(), 400)
    if faults.content_filter:
        return json_response(shape.content_filtered(), 400)
    if faults.status is not None:
        return error_response(shape, faults.status, f"mock fault: status={faults.status}", faults)
    if faults.down_for is not None:
        now = time.monotonic()
        if now - state.seen_since(spec, now) < faults.down_for:
            message = f"mock fault: down for {faults.down_for:g}s after the first request"
            return error_response(shape, faults.fail_status, message, faults)
    if faults.fail and (attempt := state.attempt(spec, request_id)) <= faults.fail:
        message = f"mock fault: attempt {attempt} of fail={faults.fail}"
        return error_response(shape, faults.fail_status, message, faults)
    if faults.html:
        return html_page()
    return Call(body, read, faults, spec, request_id, number)


async def _reply(request: web.Request, call: Call, payload: dict[str, Any]) -> web.StreamResponse:
    """A non-stream answer, after the delay; `hang`, `drop` and `drip` apply."""
    faults, settings = call.faults, request.app[MOCK_SETTINGS]
    if (interval := faults.drip) is not None:
        return await _recorded(request, call, lambda record: drip(request, record, interval, False))
    if faults.hang:
        await asyncio.Future()  # no answer until the client goes away (handler cancelled)
    await asyncio.sleep(faults.delay if faults.delay is not None else settings.first_byte_delay)
    if faults.drop is not None and request.transport is not None:
        request.transport.abort()
    return await send_json(request, payload, faults)


async def _recorded(
    request: web.Request, call: Call, serve: Callable[[StreamRecord], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run `serve` with a fresh `StreamRecord`, noting when and how the stream ended."""
    record = StreamRecord(request.path, call.spec, call.request_id)
    request.app[MOCK_STATE].record_stream(record)
    try:
        return await serve(record)
    except asyncio.CancelledError:
        record.client_closed = True
        raise
    finally:
        record.closed_at = time.monotonic()
        record.ended.set()


async def _complete(request: web.Request, shape: Shape) -> web.StreamResponse:
    """Chat completions, messages, responses and legacy completions: one flow, four shapes."""
    call = await _admit(request, shape, chat_reader(shape))
    if not isinstance(call, Call):
        return call
    faults, settings, body = call.faults, request.app[MOCK_SETTINGS], call.body
    options = body.get("stream_options")
    ask = Ask(
        words=faults.words if faults.words is not None else settings.words,
        cap=shape.max_tokens(body),
        tool_calls=faults.tools,
        text_then_tool=faults.text_then_tool,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )
    model = str(body.get("model", "mock-1"))
    answer = build_answer(call.read, model, f"{shape.id_prefix}{call.number:06d}", ask)
    if body.get("stream") is not True:
        return await _reply(request, call, shape.completion(answer))
    if (interval := faults.drip) is not None:
        return await _recorded(request, call, lambda record: drip(request, record, interval, True))
    delay = faults.delay if faults.delay is not None else settings.first_byte_delay
    tps = faults.tps if faults.tps is not None else settings.tokens_per_second
    steps = shape.stream(answer)
    return await _recorded(
        request, call, lambda record: write_stream(request, steps, faults, record, delay, tps)
    )


# --- handlers ----------------------------------------------------------------------------


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, OPENAI_SHAPE)


async def _messages(request: web.Request) -> web.StreamResponse:
    return await _complete(request, ANTHROPIC_SHAPE)


async def _responses(request: web.Request) -> web.StreamResponse:
    return await _complete(request, RESPONSES_SHAPE)


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, COMPLETIONS_SHAPE)


async def _embeddings(request: web.Request) -> web.StreamResponse:
    call = await _admit(request, OPENAI_SHAPE, embedding_inputs)
    if not isinstance(call, Call):
        return call
    payload = embeddings_body(call.body, call.read)
    if isinstance(payload, str):
        return error_response(OPENAI_SHAPE, 400, payload)
    return await _reply(request, call, payload)


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    call = await _admit(request, ANTHROPIC_SHAPE, ANTHROPIC_SHAPE.read)
    if not isinstance(call, Call):
        return call
    return await _reply(request, call, count_tokens(call.read))


async def _models(request: web.Request) -> web.Response:
    """The model list, in Anthropic's shape (paginated by `limit` and `after_id`) when the
    request carries `anthropic-version`, else OpenAI's (one page)."""
    settings = request.app[MOCK_SETTINGS]
    headers = {k.lower(): v for k, v in request.headers.items()}
    request.app[MOCK_STATE].record_model_list(
        RecordedRequest(request.path, headers, None, "", headers.get("x-request-id"), dict(request.query)))
    if settings.api_key is not None and ANTHROPIC_SHAPE.api_key(request) != settings.api_key:
        return error_response(OPENAI_SHAPE, 401, "invalid api key")  # either header is fine
    names = list(settings.models)
    if "anthropic-version" not in request.headers:
        return json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "mock"} for name in names]})
    try:
        limit = max(1, min(int(request.query.get("limit", "20")), settings.models_page, 1000))
    except ValueError:
        return error_response(ANTHROPIC_SHAPE, 400, "limit must be an integer")
    after = request.query.get("after_id")
    start = names.index(after) + 1 if after in names else 0
    page = names[start:start + limit]
    return json_response({
        "data": [{"type": "model", "id": name, "display_name": name, "created_at": "2024-01-01T00:00:00Z"}
                 for name in page],
        "has_more": start + limit < len(names),
        "first_id": page[0] if page else None, "last_id": page[-1] if page else None})


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    return json_response(request.app[MOCK_STATE].stats())


async def _reset(request: web.Request) -> web.Response:
    request.app[MOCK_STATE].reset()
    return web.Response(status=204)


# --- app and runners ---------------------------------------------------------------------


def build_mock_app(settings: MockSettings | None = None) -> web.Application:
    app = web.Application()
    app[MOCK_SETTINGS] = settings = settings or MockSettings()
    app[MOCK_STATE] = MockState(max_records=settings.max_records)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_post("/v1/responses", _responses)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/embeddings", _embeddings)
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
