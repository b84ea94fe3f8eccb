"""The other provider APIs, passed through to an upstream of their own dialect:
`/v1/responses`, `/v1/embeddings`, `/v1/completions` (OpenAI) and
`/v1/messages/count_tokens` (Anthropic).

Rules:
- The client's bytes go upstream as they are (only the model name is rewritten when a route
  renames it), to the upstream's path for this API; the answer comes back as it is.
- Only targets of the API's dialect are used, but for `/v1/responses`, which also reaches
  Anthropic-dialect targets, translated both ways (`responses_claude.py`, the codecs).
- Same stages as chat: auth, admission, retries and fallbacks, metrics, the log line.
- A stream ends at its API's end marker; tokens are charged from the upstream's `usage`.
- A Responses stream the gateway must end with an error gets the Responses API's own error
  event (`RESPONSES_SHAPE`), numbered after the last event the upstream sent.
- count_tokens is admitted by request count only and charges no tokens (nor budget); embeddings
  reserve their input only (they generate no tokens).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from aiohttp import web

from ..body import Call, check_token_limits, dumps, model_of, read_json, stream_of
from ..dialects import ANTHROPIC, OPENAI, Dialect, Usage
from ..dialects.openai import OpenAIDialect
from ..errors import BadRequest, GatewayError, UpstreamError, UpstreamHTTPError
from ..exact_usage import asking_usage, client_asked
from ..markers import Marker
from ..relay.hidden_usage import HiddenUsage
from ..relay.loop import Stopped
from ..relay.sinks import PassThrough, Sink, Write
from ..response_owners import StreamIdWatch, check_previous, remember_answer, watch_stream
from ..routing import Target
from ..shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, RESPONSES_SHAPE, ErrorShape
from ..state import GATE, LIVE, RECORD
from .responses_claude import ResponsesToClaude
from .stages import (
    Tried,
    authenticate,
    charge_attempts,
    early_commit,
    end_committed,
    json_answer,
    open_upstream,
    stream_to_client,
)


class ResponsesDialect(OpenAIDialect):
    """OpenAI's Responses API: usage is `input_tokens`/`output_tokens`, in the body or in the
    final `response.*` event's `response` (see `RESPONSES_ENDS`)."""

    def usage_from_body(self, body: dict[str, Any]) -> Usage | None:
        usage = body.get("usage")
        if not isinstance(usage, dict):
            return None
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")), True)

    def update_usage(self, usage: Usage, data: dict[str, Any]) -> None:
        answer = data.get("response")
        found = self.usage_from_body(answer) if isinstance(answer, dict) else None
        if found is not None:
            usage.prompt_tokens, usage.completion_tokens = found.prompt_tokens, found.completion_tokens
            usage.reported = True


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


RESPONSES = ResponsesDialect()
#: A Responses stream ends at one of these events (an `event:` line, or a `data:` line that
#: names its type first); its error event is `event: error`. On line starts only.
RESPONSES_ENDS = tuple(
    marker for kind in (b"response.completed", b"response.failed", b"response.incomplete")
    for marker in (Marker(b"event: " + kind), Marker(b"event:" + kind),
                   Marker(b'data: {"type":"' + kind + b'"', whole=False)))
RESPONSES_ERRORS = (Marker(b"event: error"), Marker(b"event:error"),
                    Marker(b'data: {"type":"error"', whole=False))
_SEQUENCE_KEY = b'"sequence_number"'
_SEQUENCE_VALUE = re.compile(rb"\s*:\s*(\d{1,18})")


class ResponsesPassThrough(PassThrough):
    """Pass-through that notes the last `sequence_number` the upstream's events carried (one
    search from the end of each read), so the gateway's own error event comes after them."""

    def __init__(self, write: Write, ends: tuple[Marker, ...], errors: tuple[Marker, ...],
                 ids: StreamIdWatch | None = None) -> None:
        super().__init__(write, RESPONSES_SHAPE, ends, errors)
        self.next_sequence_number = 0
        self.ids = ids  # notes whose the stream's response id is

    def watch(self, complete: bytes) -> bytes:
        out = super().watch(complete)
        if self.ids is not None:
            self.ids.feed(complete)
        at = complete.rfind(_SEQUENCE_KEY)
        if at >= 0 and (found := _SEQUENCE_VALUE.match(complete, at + len(_SEQUENCE_KEY))):
            self.next_sequence_number = max(self.next_sequence_number, int(found.group(1)) + 1)
        return out

    async def error(self, exc: GatewayError) -> None:
        if not self.failed:
            self.failed = True
            await self.write(self.shape.event(exc, self.next_sequence_number))


@dataclass(frozen=True, slots=True)
class Api:
    dialect: Dialect  # of the upstreams that serve it; it also meters usage and ends streams
    path: str  # the upstream's path, after its base URL (Anthropic's after /v1)
    shape: ErrorShape
    required: str  # the body field besides `model` that must be there
    streams: bool = False
    tokens: bool = True  # False: admitted by request count only, nothing charged
    answers: bool = True  # False: no generated tokens (embeddings): the prompt only is reserved
    ends: tuple[Marker, ...] = ()  # a stream's end markers, when not the dialect's
    errors: tuple[Marker, ...] = ()  # a stream's error markers, when not the dialect's


API_RESPONSES = Api(RESPONSES, "/responses", RESPONSES_SHAPE, "input", streams=True, ends=RESPONSES_ENDS,
                    errors=RESPONSES_ERRORS)
API_EMBEDDINGS = Api(OPENAI, "/embeddings", OPENAI_SHAPE, "input", answers=False)
API_COMPLETIONS = Api(OPENAI, "/completions", OPENAI_SHAPE, "prompt", streams=True)
API_COUNT_TOKENS = Api(ANTHROPIC, "/messages/count_tokens", ANTHROPIC_SHAPE, "messages", tokens=False)




async def _read(request: web.Request, api: Api) -> Call:
    raw, body = await read_json(request)
    model = model_of(body)
    if body.get(api.required) is None:
        raise BadRequest(f"`{api.required}` is required")
    stream = stream_of(body)
    if stream and not api.streams:
        raise BadRequest("`stream` is not supported on this API")
    check_token_limits(body)
    return Call(raw, body, model, stream)


async def _passthrough(request: web.Request, api: Api) -> web.StreamResponse:
    live = request.app[LIVE].current
    record = request[RECORD]
    tenant = authenticate(request, live, record)
    call = await _read(request, api)
    record.model, record.stream = call.model, call.stream
    if api is API_RESPONSES:  # another tenant's response id is a 404 (response_owners.py)
        await check_previous(request.app, tenant.name, call.body)
    translates = api is API_RESPONSES  # to Anthropic targets too (responses_claude.py)
    plan = live.router.route(tenant, call.model, None if translates else api.dialect.name, api=request.path)
    plan = replace(plan, targets=tuple(replace(t, path=api.path) if t.upstream.dialect == api.dialect.name
                                       else t for t in plan.targets))
    claude = ResponsesToClaude.for_plan(call, plan, live.config.server.default_max_tokens) \
        if translates else None  # what can't be carried is a 400 here, before admission
    async with request.app[GATE].admit(tenant, call.body, call.raw, slot=True, prices=live.prices,
                                       tokens=api.tokens, answer=api.answers, models=plan.models) as ticket:
        record.headers, record.queue_wait, record.ticket = ticket.headers, ticket.queue_wait, ticket
        early = early_commit(request, live, record)  # heartbeats don't end failover here either
        tried = Tried(_body_for(call, api, claude))
        try:
            opened = await open_upstream(request, live, record, plan, tried, early)
        except (UpstreamError, Stopped) as exc:  # no target answered, or drain stopped it
            if early is not None and early.response is not None:  # the client has its 200
                return await end_committed(early.response, record, api.shape, exc)
            if isinstance(exc, UpstreamHTTPError) and claude is not None and tried.target is not None \
                    and tried.target.upstream.dialect == ANTHROPIC.name:  # its 4xx, in OpenAI's shape
                record.translated = True
                exc.body, exc.content_type = claude.error_body(exc.body, exc.status), "application/json"
            raise
        ticket.model = opened.target.model  # only the attempt that answered is charged
        translated = record.translated = claude is not None and opened.dialect is ANTHROPIC
        metered = ANTHROPIC if translated else api.dialect  # usage is read in the upstream's dialect
        response: web.StreamResponse
        if not record.stream:
            answer = claude.answer(opened.target.model) if claude is not None and translated else None
            response, usage = json_answer(opened, ticket.prompt_estimate, metered, answer)
            if api is API_RESPONSES and not translated:  # the gateway keeps no translated answer
                remember_answer(request.app, tenant.name, response.status, opened.first)
            if not api.tokens:  # count_tokens: admitted and charged by request count only
                usage = Usage()
            ticket.settle(usage)
            record.usage = usage
            charge_attempts(record, ticket, [(opened, usage)])
        else:  # the relay's outcome settles the ticket and fills the record (`note_relayed`)
            ends = api.ends or api.dialect.end_markers
            errors = api.errors or api.dialect.error_markers
            sink = HiddenUsage if _hides_usage(api, call) else PassThrough
            del call, tried  # a stream may last minutes: its parsed body is not held meanwhile
            if claude is not None and translated:
                make_sink = claude.sink(opened.target.model, live.config.server.max_line_bytes)
            else:
                def make_sink(write: Write) -> Sink:
                    # A completions stream complete without its `[DONE]` gets it from the
                    # gateway; a Responses stream has no finish before its end event.
                    if api.shape is RESPONSES_SHAPE:
                        ids = watch_stream(request.app, tenant.name)
                        return ResponsesPassThrough(write, ends, errors, ids)
                    return sink(write, api.shape, ends, errors, api.dialect.end_bytes)
            response = await stream_to_client(request, live, record, ticket, opened, metered, make_sink,
                                              early=early)
    return response


def _hides_usage(api: Api, call: Call) -> bool:
    """A completions stream the client did not ask usage of: asked anyway, then not forwarded."""
    return api is API_COMPLETIONS and call.stream and not client_asked(call.body)


# The handlers: partials, not wrapper coroutines (a stream holds one coroutine frame less).
responses = partial(_passthrough, api=API_RESPONSES)
embeddings = partial(_passthrough, api=API_EMBEDDINGS)
completions = partial(_passthrough, api=API_COMPLETIONS)
count_tokens = partial(_passthrough, api=API_COUNT_TOKENS)


def _body_for(call: Call, api: Api, claude: ResponsesToClaude | None) -> Callable[[Target], bytes]:
    def body_for(target: Target) -> bytes:
        if claude is not None and target.upstream.dialect == ANTHROPIC.name:
            return claude.body_for(target)  # /v1/responses, translated
        if _hides_usage(api, call):  # exact usage: asked for, and hidden from the client
            return dumps({**asking_usage(call.body), "model": target.model})
        if target.model == call.model:
            return call.raw  # pass-through: the client's bytes, as they are
        return dumps({**call.body, "model": target.model})
    return body_for
