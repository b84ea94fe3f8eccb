"""The chat routes: `/v1/chat/completions` (OpenAI), `/v1/messages` (Anthropic) and
`/api/chat/stream` (the browser's simple events), to an upstream of either dialect.

Rules:
- Same dialect on both sides: the client's bytes go upstream as they are (only the model
  name is rewritten when the route renames it), and the answer's bytes come back untouched.
- Dialects differ: the request body, the stream (event by event, see `gateway.codecs`), a
  JSON answer and an upstream 4xx body are translated; the record says `translated`.
- Usage is always metered on the UPSTREAM's bytes, in the upstream's dialect.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from ..body import Call, dumps, read_chat
from ..codecs import (
    AnthropicToChat,
    ChatToAnthropic,
    SimpleCodec,
    StreamCodec,
    chat_to_messages,
    completion_to_message,
    message_to_completion,
    messages_to_chat,
    translate_error_body,
)
from ..dialects import ANTHROPIC, DIALECTS, OPENAI, Dialect
from ..errors import UpstreamAnswered, UpstreamError, UpstreamHTTPError
from ..exact_usage import asking_usage, client_asked
from ..relay.hidden_usage import HiddenUsage
from ..relay.loop import Stopped
from ..relay.sinks import PassThrough, Sink, Translating, Write
from ..routing import Target
from ..shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, SIMPLE_SHAPE, ErrorShape
from ..spend import PriceTable
from ..state import GATE, LIVE, RECORD
from ..upstream import Opened
from .stages import (
    Tried,
    authenticate,
    charge_attempts,
    early_commit,
    end_committed,
    json_answer,
    open_upstream,
    resumer,
    stream_to_client,
)


async def _chat(request: web.Request, client: Dialect | None, shape: ErrorShape) -> web.StreamResponse:
    """`client` is the route's dialect (None: the browser's simple events)."""
    live = request.app[LIVE].current
    record = request[RECORD]
    tenant = authenticate(request, live, record)
    call = await read_chat(request)
    record.model, record.stream = call.model, call.stream or client is None
    plan = live.router.route(tenant, call.model)
    async with request.app[GATE].admit(tenant, call.body, call.raw, slot=True, prices=live.prices,
                                       models=plan.models) as ticket:
        record.headers, record.queue_wait, record.ticket = ticket.headers, ticket.queue_wait, ticket
        tried = Tried(_body_for(call, client, live.config.server.default_max_tokens))
        early = early_commit(request, live, record)
        try:
            opened = await open_upstream(request, live, record, plan, tried, early)
        except (UpstreamError, Stopped) as exc:  # no target answered, or drain stopped it
            if early is not None and early.response is not None:  # the client has its 200
                return await end_committed(early.response, record, shape, exc)
            if isinstance(exc, UpstreamHTTPError) and client is None:  # simple events: its shape
                raise UpstreamAnswered(exc.status, _error_message(exc.body)) from None
            if (isinstance(exc, UpstreamHTTPError) and client is not None and tried.target is not None
                    and _upstream(tried.target) is not client):
                record.translated = True
                exc.body = translate_error_body(exc.body, tried.target.upstream.dialect, client.name,
                                                exc.status)
                exc.content_type = "application/json"
            raise
        ticket.model = opened.target.model  # only the attempt that answered is charged
        upstream = opened.dialect
        record.translated = client is not None and upstream is not client
        response: web.StreamResponse
        if not record.stream:
            translate = _json_translator(client, upstream, opened.target.model)
            response, usage = json_answer(opened, ticket.prompt_estimate, upstream, translate)
            ticket.settle(usage)
            record.usage = usage
            charge_attempts(record, ticket, [(opened, usage)])
        else:  # the relay's outcome settles the ticket and fills the record (`note_relayed`)
            include_usage = _include_usage(call)
            resume = None
            if plan.resume_midstream:  # keeps the request's body, to ask a continuation
                resume = resumer(request, record, plan, tried, client.name if client else "simple",
                                 include_usage, ticket.prompt_estimate)
            make_sink = _sink_maker(client, shape, opened, include_usage,
                                    live.config.server.max_line_bytes, ticket.prices)
            del call, tried  # a stream may last minutes: its parsed body is not held meanwhile
            response = await stream_to_client(
                request, live, record, ticket, opened, upstream, make_sink, resume, early)
    return response


# The handlers: partials, not wrapper coroutines (a stream holds one coroutine frame less).
chat_completions = partial(_chat, client=OPENAI, shape=OPENAI_SHAPE)
messages = partial(_chat, client=ANTHROPIC, shape=ANTHROPIC_SHAPE)
chat_stream = partial(_chat, client=None, shape=SIMPLE_SHAPE)


def _error_message(body: bytes) -> str:
    """The message of an upstream's JSON error body, either dialect (already masked)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:500] if message else "the upstream refused the request"


def _upstream(target: Target) -> Dialect:
    return DIALECTS[target.upstream.dialect]


def _body_for(call: Call, client: Dialect | None, default_max_tokens: int) -> Callable[[Target], bytes]:
    def body_for(target: Target) -> bytes:
        upstream = _upstream(target)
        if client is None:
            return dumps({**upstream.simple_request(call.body), "model": target.model})
        if upstream is client:
            if call.stream and upstream is OPENAI and not client_asked(call.body):
                return dumps({**asking_usage(call.body), "model": target.model})  # exact usage
            if target.model == call.model:
                return call.raw  # pass-through: the client's bytes, as they are
            return dumps({**call.body, "model": target.model})
        if client is OPENAI:
            body = chat_to_messages(call.body, default_max_tokens)
        else:
            body = messages_to_chat(call.body)
        return dumps({**body, "model": target.model})
    return body_for


def _json_translator(client: Dialect | None, upstream: Dialect,
                     model: str) -> Callable[[dict[str, Any]], bytes] | None:
    if client is None or client is upstream:
        return None
    if client is OPENAI:
        return lambda body: orjson.dumps(message_to_completion(body, model))
    return lambda body: orjson.dumps(completion_to_message(body, model))


def _sink_maker(client: Dialect | None, shape: ErrorShape, opened: Opened, include_usage: bool,
                max_line_bytes: int, prices: PriceTable | None = None) -> Callable[[Write], Sink]:
    upstream = opened.dialect
    codec: StreamCodec
    if client is None:
        # The done event's cost: the answering model at the prices the log line charges it at.
        model = opened.target.model
        codec = SimpleCodec(upstream.name, None if prices is None else partial(prices.cost, model))
    elif client is upstream:
        # OpenAI: the usage the gateway asked for is not forwarded when the client did not ask
        sink = PassThrough if include_usage or upstream is not OPENAI else HiddenUsage
        return lambda write: sink(write, shape, upstream.end_markers, upstream.error_markers,
                                  upstream.end_bytes)
    elif client is OPENAI:
        codec = AnthropicToChat(opened.target.model, include_usage, int(time.time()),
                                f"chatcmpl-{uuid.uuid4().hex}")
    else:
        codec = ChatToAnthropic(opened.target.model, f"msg_{uuid.uuid4().hex}")
    return lambda write: Translating(write, shape, codec, max_line_bytes, upstream.end_event)


def _include_usage(call: Call) -> bool:
    return client_asked(call.body)
