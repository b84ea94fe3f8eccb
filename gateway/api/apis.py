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

from ..admission.ticket import Ticket
from ..body import Call, check_token_limits, dumps, model_of, read_json, stream_of
from ..config import Tenant
from ..dialects import ANTHROPIC, OPENAI, Dialect
from ..dialects.completions import COMPLETIONS
from ..dialects.responses import RESPONSES, RESPONSES_ENDS, RESPONSES_ERRORS
from ..errors import BadRequest, GatewayError, UpstreamHTTPError
from ..exact_usage import asking_usage, client_asked
from ..live import Snapshot
from ..markers import Marker
from ..relay.hidden_usage import HiddenUsage
from ..relay.resume import ClientView
from ..relay.sinks import PassThrough, Write
from ..response_owners import StreamIdWatch, check_previous, remember_answer, watch_stream
from ..routing import Plan, Target
from ..shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, RESPONSES_SHAPE, ErrorShape
from ..upstream import Opened
from .pipeline import SinkMaker, UpstreamRoute, run
from .responses_claude import ResponsesToClaude
from .stages import BodyFor

__all__ = ["RESPONSES_ENDS", "RESPONSES_ERRORS", "completions", "count_tokens", "embeddings",
           "responses"]


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

    def numbered(self, last: int) -> None:
        self.next_sequence_number = max(self.next_sequence_number, last + 1)

    async def error(self, exc: GatewayError) -> None:
        if not self.failed:
            self.failed = True
            await self.write(self.shape.event(exc, self.next_sequence_number))


@dataclass(frozen=True, slots=True)
class Api(UpstreamRoute):
    """A pass-through API: only targets of its dialect serve it, never translated, but for the
    Responses API (`responses`), which reaches Anthropic targets too: a request's `prepare`
    gives a copy holding its `ResponsesToClaude` bridge when its plan has such a target."""

    dialect: Dialect  # of the upstreams that serve it; it also meters usage and ends streams
    path: str  # the upstream's path, after its base URL (Anthropic's after /v1)
    shape: ErrorShape
    required: str  # the body field besides `model` that must be there
    streams_allowed: bool = False
    tokens: bool = True  # False: admitted by request count only, nothing charged
    answers: bool = True  # False: no generated tokens (embeddings): the prompt only is reserved
    ends: tuple[Marker, ...] = ()  # a stream's end markers, when not the dialect's
    errors: tuple[Marker, ...] = ()  # a stream's error markers, when not the dialect's
    exact_usage: bool = False  # a stream that did not ask usage is asked it, then not shown
    #: the Responses API: response ids owned per tenant, Anthropic targets reached translated
    responses: bool = False
    claude: ResponsesToClaude | None = None  # one request's bridge (`prepare`), else None

    async def read(self, request: web.Request) -> Call:
        raw, body = await read_json(request)
        model = model_of(body)
        if body.get(self.required) is None:
            raise BadRequest(f"`{self.required}` is required")
        stream = stream_of(body)
        if stream and not self.streams_allowed:
            raise BadRequest("`stream` is not supported on this API")
        check_token_limits(body)
        return Call(raw, body, model, stream)

    async def vet(self, app: web.Application, tenant: Tenant, call: Call) -> None:
        if self.responses:  # another tenant's response id is a 404 (response_owners.py)
            await check_previous(app, tenant.name, call.body)

    def plan(self, snapshot: Snapshot, tenant: Tenant, call: Call, path: str) -> Plan:
        name = self.dialect.name
        plan = snapshot.router.route(tenant, call.model, None if self.responses else name, api=path)
        return replace(plan, targets=tuple(replace(t, path=self.path) if t.upstream.dialect == name
                                           else t for t in plan.targets))

    def prepare(self, call: Call, plan: Plan, snapshot: Snapshot) -> Api:
        if not self.responses:
            return self
        # What can't be carried to an Anthropic target is a 400 here, before admission.
        claude = ResponsesToClaude.for_plan(call, plan, snapshot.config.server.default_max_tokens)
        return self if claude is None else replace(self, claude=claude)

    def body_for(self, call: Call, snapshot: Snapshot) -> BodyFor:
        return _body_for(call, self, self.claude)

    def refused(self, exc: UpstreamHTTPError, target: Target | None) -> tuple[GatewayError, bool]:
        claude = self.claude
        if claude is not None and target is not None and target.upstream.dialect == ANTHROPIC.name:
            exc.body, exc.content_type = claude.error_body(exc.body, exc.status), "application/json"
            return exc, True  # its 4xx, in OpenAI's shape
        return exc, False

    def translates(self, opened: Opened) -> bool:
        return self.claude is not None and opened.dialect is ANTHROPIC

    def speaks(self, target: Target) -> Dialect:
        # A translated target is asked (and its usage read) in the upstream's dialect.
        translated = self.claude is not None and target.upstream.dialect == ANTHROPIC.name
        return ANTHROPIC if translated else self.dialect

    def json(self, opened: Opened) -> Callable[[dict[str, Any]], bytes] | None:
        claude = self.claude
        return claude.answer(opened.target.model) if claude is not None and self.translates(opened) else None

    def answered(self, app: web.Application, tenant: Tenant, opened: Opened, status: int) -> None:
        if self.responses and not self.translates(opened):  # the gateway keeps no translated one
            remember_answer(app, tenant.name, status, opened.first)

    def sink(self, opened: Opened, call: Call, ticket: Ticket, snapshot: Snapshot,
             app: web.Application, tenant: Tenant) -> SinkMaker:
        if self.claude is not None and self.translates(opened):
            return self.claude.sink(opened.target.model, snapshot.config.server.max_line_bytes)
        ends = self.ends or self.dialect.end_markers
        errors = self.errors or self.dialect.error_markers
        if self.shape is RESPONSES_SHAPE:  # a Responses stream has no finish before its end event
            ids = watch_stream(app, tenant.name)
            return lambda write: ResponsesPassThrough(write, ends, errors, ids)
        # A completions stream complete without its `[DONE]` gets it from the gateway.
        shape, end_bytes = self.shape, self.dialect.end_bytes
        sink = HiddenUsage if _hides_usage(self, call) else PassThrough
        return lambda write: sink(write, shape, ends, errors, end_bytes)

    def view(self, call: Call) -> ClientView | None:
        """Responses and completions streams are resumed in their own dialect's shapes (a
        Responses stream to an Anthropic target too: its events are read in `meters`')."""
        if self.streams_allowed:
            return ClientView(self.dialect.client_spot(client_asked(call.body)))
        return None


API_RESPONSES = Api(RESPONSES, "/responses", RESPONSES_SHAPE, "input", streams_allowed=True,
                    responses=True)
API_EMBEDDINGS = Api(OPENAI, "/embeddings", OPENAI_SHAPE, "input", answers=False)
API_COMPLETIONS = Api(COMPLETIONS, "/completions", OPENAI_SHAPE, "prompt", streams_allowed=True,
                      exact_usage=True)
API_COUNT_TOKENS = Api(ANTHROPIC, "/messages/count_tokens", ANTHROPIC_SHAPE, "messages", tokens=False)


# The handlers: partials, not wrapper coroutines (a stream holds one coroutine frame less).
responses = partial(run, route=API_RESPONSES)
embeddings = partial(run, route=API_EMBEDDINGS)
completions = partial(run, route=API_COMPLETIONS)
count_tokens = partial(run, route=API_COUNT_TOKENS)


def _hides_usage(api: Api, call: Call) -> bool:
    """A completions stream the client did not ask usage of: asked anyway, then not forwarded."""
    return api.exact_usage and call.stream and not client_asked(call.body)


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
