"""Resumable streams over HTTP: `POST /api/chat/streams` (create), `GET .../{id}` (subscribe,
no key: the id is the capability), `DELETE .../{id}` (the creating tenant cancels), and the
origin story's `GET /api/chat/stream?messages=...` (create on the first request; a
`Last-Event-ID` of the form `<stream id>.<seq>` subscribes to that stream instead).

Each request has its own log line (without usage); the generation tells its usage and cost
once (`streams.generation.tell_generation`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from datetime import UTC, datetime

from aiohttp import web

from ..body import Call, dumps, parse_json, read_chat
from ..config import Tenant
from ..errors import BadRequest, GatewayError
from ..live import Snapshot
from ..record import Record
from ..state import GATE, LIVE, METRICS, RECORD, STREAMS
from ..streams.generation import ClientCancelled, Generation, generate
from ..streams.hub import Streams
from ..streams.log import StreamInfo, Unavailable
from ..streams.subscribe import serve_events
from .stages import authenticate

#: what `secrets.token_urlsafe(24)` makes (192 random bits), with room to spare
STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: how long DELETE waits for the generation to settle before it answers
CANCEL_WAIT_SECONDS = 5.0


class StreamNotFound(GatewayError):
    status = 404
    code = "stream_not_found"
    kind = "not_found"
    outcome = "not_found"

    def __init__(self) -> None:
        super().__init__("no such stream (unknown, expired, or not this key's)")


class StreamElsewhere(GatewayError):
    """DELETE of a stream whose generation runs in another process (Redis backend)."""

    status = 409
    code = "stream_elsewhere"
    kind = "invalid_request"
    outcome = "bad_request"


class UriTooLong(BadRequest):
    status = 414
    code = "uri_too_long"
    kind = "request_too_large"


async def create_stream(request: web.Request) -> web.StreamResponse:
    snapshot = request.app[LIVE].current
    record = request[RECORD]
    tenant = authenticate(request, snapshot, record)
    call = await read_chat(request)
    record.model = call.model
    generation = await _start(request, snapshot, record, tenant, call)
    await request.app[STREAMS].log.published(generation.stream_id)  # findable on any replica
    url = f"/api/chat/streams/{generation.stream_id}"
    bound = max(t.upstream.total_timeout_seconds for t in snapshot.router.route(tenant, call.model).targets)
    expires = datetime.fromtimestamp(time.time() + bound + snapshot.config.streams.keep_seconds, UTC)
    body = {"id": generation.stream_id, "url": url,
            "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z")}
    return web.Response(status=201, body=dumps(body), content_type="application/json",
                        headers={"Location": url})


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Subscribe: no key. Replays from the start, or after `Last-Event-ID` (a number)."""
    hub = request.app[STREAMS]
    last = _last_event_id(request)
    stream_id = request.match_info["stream_id"]
    if not STREAM_ID.match(stream_id):
        if last is not None:
            request.app[METRICS].stream_resumes.labels("unknown").inc()
        raise StreamNotFound()
    after = 0
    if last is not None:
        if not last.isdigit() or len(last) > 18:
            raise BadRequest("Last-Event-ID must be the id of an event of this stream (a number)")
        after = int(last)
    info = await _info(request, hub, stream_id, resumed=last is not None)
    _name_tenant(request, info)
    return await _subscribe(request, hub, stream_id, after, "", resumed=last is not None)


async def cancel_stream(request: web.Request) -> web.StreamResponse:
    snapshot = request.app[LIVE].current
    tenant = authenticate(request, snapshot, request[RECORD])
    hub = request.app[STREAMS]
    stream_id = _stream_id(request.match_info["stream_id"])
    info = await _info(request, hub, stream_id, resumed=False)
    if info.tenant != tenant.name:
        raise StreamNotFound()
    generation = hub.generations.get(stream_id)
    if generation is None and not info.local:
        raise StreamElsewhere("this stream's generation runs on another replica: cancel it there, "
                              "or let it be (nobody watching, it stops after abandon_seconds)")
    if generation is not None and generation.task is not None:
        generation.cancel(ClientCancelled("the stream was cancelled by its creator"))
        await asyncio.wait([generation.task], timeout=CANCEL_WAIT_SECONDS)  # settled: charged
    return web.Response(status=204)


async def chat_stream_get(request: web.Request) -> web.StreamResponse:
    """The origin story's `EventSource(BASE + '/api/chat/stream?messages=...')`."""
    snapshot = request.app[LIVE].current
    record = request[RECORD]
    tenant = authenticate(request, snapshot, record)
    limit = snapshot.config.server.max_body_bytes
    if len(request.raw_path) > limit:
        raise UriTooLong(f"the URL is {len(request.raw_path)} bytes, over the body limit of {limit}: "
                         "POST the messages to /api/chat/streams instead")
    hub = request.app[STREAMS]
    last = _last_event_id(request)
    if last is not None:  # the browser's reconnect: the same generation, never a second one
        stream_id, dot, seq = last.rpartition(".")
        if not dot or not STREAM_ID.match(stream_id) or not seq.isdigit() or len(seq) > 18:
            raise BadRequest("Last-Event-ID must be an event id this route gave (<stream id>.<seq>)")
        info = await _info(request, hub, stream_id, resumed=True)
        if info.tenant != tenant.name:
            raise StreamNotFound()
        return await _subscribe(request, hub, stream_id, int(seq), stream_id + ".", resumed=True)
    call = _query_call(request, snapshot, tenant)
    record.model = call.model
    generation = await _start(request, snapshot, record, tenant, call)
    return await _subscribe(request, hub, generation.stream_id, 0, generation.stream_id + ".",
                            resumed=False)


# -- the stages ---------------------------------------------------------------------------


async def _start(request: web.Request, snapshot: Snapshot, record: Record, tenant: Tenant,
                 call: Call) -> Generation:
    """Admit (buckets, budget, a slot the generation holds) and start the generation."""
    app = request.app
    hub = app[STREAMS]
    plan = snapshot.router.route(tenant, call.model)
    admitted = app[GATE].admit(tenant, call.body, call.raw, slot=True, prices=snapshot.prices,
                               models=[t.model for t in plan.targets])
    ticket = await admitted.enter()
    try:
        record.headers, record.queue_wait = ticket.headers, ticket.queue_wait
        stream_id = secrets.token_urlsafe(24)  # 192 random bits: the capability to read it
        writer = hub.log.create(stream_id, tenant.name)
        generation = Generation(stream_id, tenant.name, writer, hub.log, hub.abandon_seconds)
        own = Record(record.request_id, record.route, time.perf_counter(), asyncio.get_running_loop().time(),
                     config=record.config, tenant=tenant, model=call.model, stream=True,
                     queue_wait=ticket.queue_wait, key_id=record.key_id, tags=record.tags)
        task = generation.task = asyncio.get_running_loop().create_task(
            generate(request, snapshot, own, plan, call, admitted, ticket, generation))
    except BaseException:
        await admitted.leave(None)
        raise
    hub.generations[stream_id] = generation
    task.add_done_callback(lambda _: hub.generations.pop(stream_id, None))
    return generation


async def _subscribe(request: web.Request, hub: Streams, stream_id: str, after: int, id_prefix: str,
                     *, resumed: bool) -> web.StreamResponse:
    record = request[RECORD]
    record.stream = True
    reader = hub.log.reader(stream_id)
    if reader is None:  # expired since `info`
        raise StreamNotFound()
    if resumed:
        try:
            batch = await reader.read(after, 0)
        except Unavailable:
            batch = None
        if batch is not None and batch.ended and not batch.events:
            return web.Response(status=204)  # it had ended: an EventSource stops reconnecting
    generation = hub.generations.get(stream_id)
    if generation is not None:
        generation.joined(resumed)
    try:
        server = request.app[LIVE].current.config.server
        response, _, _ = await serve_events(
            request, reader, after, id_prefix, server.heartbeat_seconds, record.headers,
            record.request_id, request.app[METRICS].heartbeats.inc)
    finally:
        if generation is not None:
            generation.left()
    return response


async def _info(request: web.Request, hub: Streams, stream_id: str, *, resumed: bool) -> StreamInfo:
    """The stream, or 404 (counted as an unknown resume when it was one)."""
    metrics = request.app[METRICS]
    try:
        info = await hub.log.info(stream_id)
    except Unavailable:
        info = None
    if info is None:
        if resumed:
            metrics.stream_resumes.labels("unknown").inc()
        raise StreamNotFound()
    if resumed:
        metrics.stream_resumes.labels("replayed").inc()
    return info


def _name_tenant(request: web.Request, info: StreamInfo) -> None:
    """A subscriber has no key: its log line names the stream's tenant."""
    snapshot = request.app[LIVE].current
    request[RECORD].tenant = next((t for t in snapshot.config.tenants if t.name == info.tenant), None)


def _stream_id(value: str) -> str:
    if not STREAM_ID.match(value):
        raise StreamNotFound()
    return value


def _last_event_id(request: web.Request) -> str | None:
    """`Last-Event-ID` (the browser's reconnect), or `lastEventId` in the query (a client
    that reconnects by hand, e.g. a new EventSource); empty is none."""
    value = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or ""
    return value.strip() or None


def _query_call(request: web.Request, snapshot: Snapshot, tenant: Tenant) -> Call:
    """`messages` (JSON) and `model` from the query; without `model`, the first model
    `/v1/models` lists for this key."""
    raw_messages = request.query.get("messages")
    if raw_messages is None:
        raise BadRequest("`messages` is required (a JSON array in the query)")
    messages = parse_json(raw_messages.encode())
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty JSON array")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise BadRequest("each message must be an object with a string `role`")
    model = request.query.get("model") or next((name for name, _ in snapshot.router.models_for(tenant)), "")
    if not model:
        raise BadRequest("`model` is required (no model is listed for this key)")
    body = {"model": model, "messages": messages, "stream": True}
    return Call(dumps(body), body, model, True)
