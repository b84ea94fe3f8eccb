"""The other provider APIs, passed through to an upstream of their own dialect:
`/v1/responses`, `/v1/embeddings`, `/v1/completions` (OpenAI) and
`/v1/messages/count_tokens` (Anthropic).

Rules:
- The client's bytes go upstream as they are (only the model name is rewritten when a route
  renames it), to the upstream's path for this API; the answer comes back as it is.
- Only targets of the API's dialect are used: there is no translation for these APIs.
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
from ..errors import BadRequest, GatewayError, UpstreamError
from ..exact_usage import asking_usage, client_asked
from ..markers import Marker
from ..relay.hidden_usage import HiddenUsage
from ..relay.loop import Stopped
from ..relay.sinks import PassThrough, Write
from ..routing import Target
from ..shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, RESPONSES_SHAPE, ErrorShape
from ..state import GATE, LIVE, RECORD
from .stages import (
    authenticate,
    charge_attempts,
    early_commit,
    end_committed,
    json_answer,
    open_upstream,
    resumer,
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


    # What a mid-stream continuation's events are read with (`relay/resume.py`'s Splice).
    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        if (data.get("type") or event) != "response.output_text.delta":
            return None
        delta = data.get("delta")
        return delta if isinstance(delta, str) and delta else None

    def is_final(self, event: str, data: str) -> bool:
        return event in ("response.completed", "response.failed", "response.incomplete")

    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        if event == "error" or data.get("type") == "error":
            error = data.get("error")
            message = error.get("message") if isinstance(error, dict) else data.get("message")
            return str(message or "upstream error")
        return None


class CompletionsDialect(OpenAIDialect):
    """OpenAI's legacy completions: a chunk's text is `choices[0].text`."""

    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        text = choices[0].get("text")
        return text if isinstance(text, str) and text else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


RESPONSES = ResponsesDialect()
COMPLETIONS = CompletionsDialect()
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

    def __init__(self, write: Write, ends: tuple[Marker, ...], errors: tuple[Marker, ...]) -> None:
        super().__init__(write, RESPONSES_SHAPE, ends, errors)
        self.next_sequence_number = 0

    def watch(self, complete: bytes) -> bytes:
        out = super().watch(complete)
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
API_COMPLETIONS = Api(COMPLETIONS, "/completions", OPENAI_SHAPE, "prompt", streams=True)
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
    plan = live.router.route(tenant, call.model, api.dialect.name, api=request.path)
    plan = replace(plan, targets=tuple(replace(t, path=api.path) for t in plan.targets))
    async with request.app[GATE].admit(tenant, call.body, call.raw, slot=True, prices=live.prices,
                                       tokens=api.tokens, answer=api.answers, models=plan.models) as ticket:
        record.headers, record.queue_wait, record.ticket = ticket.headers, ticket.queue_wait, ticket
        early = early_commit(request, live, record)  # heartbeats don't end failover here either
        try:
            opened = await open_upstream(request, live, record, plan, _body_for(call, api), early)
        except (UpstreamError, Stopped) as exc:  # no target answered, or drain stopped it
            if early is not None and early.response is not None:  # the client has its 200
                return await end_committed(early.response, record, api.shape, exc)
            raise
        ticket.model = opened.target.model  # only the attempt that answered is charged
        response: web.StreamResponse
        if not record.stream:
            response, usage = json_answer(opened, ticket.prompt_estimate, api.dialect)
            if not api.tokens:  # count_tokens: admitted and charged by request count only
                usage = Usage()
            ticket.settle(usage)
            record.usage = usage
            charge_attempts(record, ticket, [(opened, usage)])
        else:  # the relay's outcome settles the ticket and fills the record (`note_relayed`)
            ends = api.ends or api.dialect.end_markers
            errors = api.errors or api.dialect.error_markers
            sink = HiddenUsage if _hides_usage(api, call) else PassThrough
            resume = None
            if plan.resume_midstream:  # keeps the request's body, to ask a continuation
                kind = "responses" if api is API_RESPONSES else "completions"
                resume = resumer(request, record, plan, _body_for(call, api), kind,
                                 client_asked(call.body), ticket.prompt_estimate)
            del call  # a stream may last minutes: its parsed body is not held meanwhile
            response = await stream_to_client(
                request, live, record, ticket, opened, api.dialect,
                # A completions stream complete without its `[DONE]` gets it from the gateway;
                # a Responses stream has no finish before its end event.
                lambda write: (ResponsesPassThrough(write, ends, errors) if api.shape is RESPONSES_SHAPE
                               else sink(write, api.shape, ends, errors, api.dialect.end_bytes)),
                resume, early=early)
    return response


def _hides_usage(api: Api, call: Call) -> bool:
    """A completions stream the client did not ask usage of: asked anyway, then not forwarded."""
    return api is API_COMPLETIONS and call.stream and not client_asked(call.body)


# The handlers: partials, not wrapper coroutines (a stream holds one coroutine frame less).
responses = partial(_passthrough, api=API_RESPONSES)
embeddings = partial(_passthrough, api=API_EMBEDDINGS)
completions = partial(_passthrough, api=API_COMPLETIONS)
count_tokens = partial(_passthrough, api=API_COUNT_TOKENS)


def _body_for(call: Call, api: Api) -> Callable[[Target], bytes]:
    def body_for(target: Target) -> bytes:
        if _hides_usage(api, call):  # exact usage: asked for, and hidden from the client
            return dumps({**asking_usage(call.body), "model": target.model})
        if target.model == call.model:
            return call.raw  # pass-through: the client's bytes, as they are
        return dumps({**call.body, "model": target.model})
    return body_for
