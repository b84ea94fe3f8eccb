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

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from ..admission.ticket import Ticket
from ..body import Call, dumps, read_chat
from ..codecs import (
    SimpleCodec,
    StreamCodec,
    translate_error_body,
)
from ..codecs.registry import translation
from ..codecs.simple import SimpleSpot
from ..config import Tenant
from ..dialects import ANTHROPIC, DIALECTS, OPENAI, Dialect
from ..errors import GatewayError, UpstreamAnswered, UpstreamHTTPError
from ..exact_usage import asking_usage, client_asked
from ..live import Snapshot
from ..relay.hidden_usage import HiddenUsage
from ..relay.resume import ClientView
from ..relay.sinks import PassThrough, Translating
from ..routing import Plan, Target
from ..shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, SIMPLE_SHAPE, ErrorShape
from ..spend import PriceTable
from ..upstream import Opened
from .pipeline import SinkMaker, UpstreamRoute, run
from .stages import BodyFor


@dataclass(frozen=True, slots=True)
class ChatRoute(UpstreamRoute):
    """A chat route: `client` is its dialect (None: the browser's simple events, always a
    stream); every target serves it, translated when the upstream's dialect differs."""

    client: Dialect | None
    shape: ErrorShape

    async def read(self, request: web.Request) -> Call:
        return await read_chat(request)

    def streams(self, call: Call) -> bool:
        return call.stream or self.client is None

    def plan(self, snapshot: Snapshot, tenant: Tenant, call: Call, path: str) -> Plan:
        return snapshot.router.route(tenant, call.model)

    def body_for(self, call: Call, snapshot: Snapshot) -> BodyFor:
        return _body_for(call, self.client, snapshot.config.server.default_max_tokens)

    def refused(self, exc: UpstreamHTTPError, target: Target | None) -> tuple[GatewayError, bool]:
        client = self.client
        if client is None:  # simple events: its own shape
            return UpstreamAnswered(exc.status, _error_message(exc.body)), False
        if target is not None and _dialect_of(target) is not client:
            exc.body = translate_error_body(exc.body, target.upstream.dialect, client.name, exc.status)
            exc.content_type = "application/json"
            return exc, True
        return exc, False

    def translates(self, opened: Opened) -> bool:
        return self.client is not None and opened.dialect is not self.client

    def json(self, opened: Opened) -> Callable[[dict[str, Any]], bytes] | None:
        return _json_translator(self.client, opened.dialect, opened.target.model)

    def sink(self, opened: Opened, call: Call, ticket: Ticket, snapshot: Snapshot,
             app: web.Application, tenant: Tenant) -> SinkMaker:
        return _sink_maker(self.client, self.shape, opened, _include_usage(call),
                           snapshot.config.server.max_line_bytes, ticket.prices)

    def view(self, call: Call) -> ClientView:
        client = self.client
        include_usage = _include_usage(call)
        return ClientView(client.client_spot(include_usage) if client else SimpleSpot(include_usage))


CHAT_COMPLETIONS = ChatRoute(OPENAI, OPENAI_SHAPE)
MESSAGES = ChatRoute(ANTHROPIC, ANTHROPIC_SHAPE)
CHAT_STREAM = ChatRoute(None, SIMPLE_SHAPE)

# The handlers: partials, not wrapper coroutines (a stream holds one coroutine frame less).
chat_completions = partial(run, route=CHAT_COMPLETIONS)
messages = partial(run, route=MESSAGES)
chat_stream = partial(run, route=CHAT_STREAM)


def _error_message(body: bytes) -> str:
    """The message of an upstream's JSON error body, either dialect (already masked)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:500] if message else "the upstream refused the request"


def _dialect_of(target: Target) -> Dialect:
    return DIALECTS[target.upstream.dialect]


def _body_for(call: Call, client: Dialect | None, default_max_tokens: int) -> Callable[[Target], bytes]:
    def body_for(target: Target) -> bytes:
        upstream = _dialect_of(target)
        if client is None:
            return dumps({**upstream.simple_request(call.body), "model": target.model})
        if upstream is client:
            if call.stream and upstream is OPENAI and not client_asked(call.body):
                return dumps({**asking_usage(call.body), "model": target.model})  # exact usage
            if target.model == call.model:
                return call.raw  # pass-through: the client's bytes, as they are
            return dumps({**call.body, "model": target.model})
        body = translation(client.name, upstream.name).request(call.body, default_max_tokens)
        return dumps({**body, "model": target.model})
    return body_for


def _json_translator(client: Dialect | None, upstream: Dialect,
                     model: str) -> Callable[[dict[str, Any]], bytes] | None:
    if client is None or client is upstream:
        return None
    answer = translation(client.name, upstream.name).answer
    return lambda body: orjson.dumps(answer(body, model))


def _sink_maker(client: Dialect | None, shape: ErrorShape, opened: Opened, include_usage: bool,
                max_line_bytes: int, prices: PriceTable | None = None) -> SinkMaker:
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
    else:
        codec = translation(client.name, upstream.name).stream(opened.target.model, include_usage)
    return lambda write: Translating(write, shape, codec, max_line_bytes, upstream.end_event)


def _include_usage(call: Call) -> bool:
    return client_asked(call.body)
