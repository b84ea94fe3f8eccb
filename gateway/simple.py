"""`POST /api/chat/stream`: simple events for browser apps, from either upstream dialect.

`event: message` `{"content": "...", "done": false}` per text delta, `event: done` `{}` at
the end, or `event: error` `{"code": N, "message": "..."}`, once, then the stream ends.
Every stage before the relay is the pass-through routes' own (see `proxy.py`).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from .config import UpstreamSpec
from .dialects import DIALECTS, Dialect
from .errors import GatewayError, UpstreamError
from .proxy import Sink, admitted, authenticate, open_upstream, read_body, stream_answer
from .sse import EventParser
from .state import FLIGHT, ROUTER, Flight


async def chat_stream(request: web.Request) -> web.StreamResponse:
    flight: Flight = request[FLIGHT]
    tenant = authenticate(request)
    _, body = await read_body(request)
    flight.model = body["model"]
    flight.stream = True
    chain = request.app[ROUTER].route(tenant, flight.model, None)

    def body_for(upstream: UpstreamSpec) -> bytes:
        return orjson.dumps(DIALECTS[upstream.dialect].simple_request(body))

    async with admitted(request, flight, body):
        opened = await open_upstream(request, flight, chain, body_for)
        dialect = DIALECTS[opened.upstream.dialect]
        return await stream_answer(request, flight, opened, dialect, SimpleEvents)


def simple_event(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class SimpleEvents(Sink):
    """Maps upstream events to simple ones; everything one read produced goes in one write."""

    def __init__(self, response: web.StreamResponse, dialect: Dialect) -> None:
        super().__init__(response, dialect)
        self._parser = EventParser()
        self._done = False
        self._failed = False

    async def lines(self, complete: bytes) -> None:
        out = []
        failure: UpstreamError | None = None
        for event in self._parser.feed(complete):
            if self._done or self._failed:
                break
            if self.dialect.is_final(event.event, event.data):
                out.append(simple_event("done", {}))
                self._done = True
                break
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                failure = UpstreamError("the upstream sent an event that is not JSON")
                break
            if not isinstance(data, dict):
                continue
            message = self.dialect.stream_error(event.event, data)
            if message is not None:
                failure = UpstreamError(f"upstream error: {message}")
                break
            text = self.dialect.text_delta(event.event, data)
            if text:
                out.append(simple_event("message", {"content": text, "done": False}))
        if out:  # what came before a failure in the same read still reaches the client
            await self.response.write(b"".join(out))
        if failure is not None:
            raise failure

    async def error(self, exc: GatewayError) -> None:
        if not self._failed:
            self._failed = True
            await self.response.write(simple_event("error", {"code": exc.status, "message": exc.message}))

    async def end(self) -> None:
        if not self._done:
            raise UpstreamError("the upstream ended the stream before the answer was complete")
