"""Early commit: the 200 SSE headers and `: ping` heartbeats for a stream whose client has
waited a heartbeat interval while the attempt policy still tries targets.

Rules (`around(waiting, at, registry)`: heartbeats while the handler awaits `waiting`):
- Nothing is sent before `at` (a stream whose first byte comes sooner behaves as if this
  did not exist); from then, one `: ping` every `interval` until `waiting` is done.
- Only whole heartbeats are written, so the relay that follows starts at an event boundary.
- A write in progress is let finish rather than cancelled halfway.
- Until `at` it is one timer: the task that writes is only made for a stream that really is
  slow (most streams' first byte comes sooner; they pay neither a task nor a loop turn).
- Drain can stop it (`stop(reason)`, like a relay's `Alarm`): the handler's wait is
  cancelled and `around` raises `Stopped` instead, so the client gets one error event (or,
  before its headers went out, a 503), never a silent close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import hdrs, web
from multidict import CIMultiDict

from ..admission.limiter import anthropic_headers
from ..header_names import REQUEST_ID, X_ACCEL_BUFFERING
from .loop import HEARTBEAT, Stoppable, Stopped
from .sinks import Write

T = TypeVar("T")

SSE_HEADERS: dict[str, str] = {
    hdrs.CONTENT_TYPE: "text/event-stream",
    hdrs.CACHE_CONTROL: "no-cache",
    X_ACCEL_BUFFERING: "no",
}


def sse_response(request_id: str, quota: dict[str, str], anthropic: bool = False) -> web.StreamResponse:
    """The client's event-stream response: its request id and the admission's headers (on a
    route with the Anthropic shape, Anthropic's names for them too: `with_anthropic_quota`)."""
    headers: dict[str, str] = {**SSE_HEADERS, REQUEST_ID: request_id, **quota}
    response = web.StreamResponse(headers=headers)
    if anthropic:
        with_anthropic_quota(response.headers)
    return response


def with_anthropic_quota(headers: CIMultiDict[str]) -> None:
    """An answer on a route with the Anthropic shape that carries the `x-ratelimit-*` headers
    carries Anthropic's `anthropic-ratelimit-*` ones too (the same quota), as of now (set as
    its headers go out: the middleware's answers, and the event-stream responses here)."""
    if "x-ratelimit-limit-requests" in headers:
        headers.update(anthropic_headers(headers, datetime.now(UTC)))


class EarlyCommit:
    __slots__ = ("_request", "_request_id", "_quota", "_anthropic", "_interval", "_on_heartbeat",
                 "_stopped", "_timer", "_task", "_wake", "_handler", "_cancelling", "_registry", "_write",
                 "halted", "response", "gone")

    def __init__(self, request: web.Request | None, request_id: str, quota: dict[str, str],
                 interval: float, on_heartbeat: Callable[[], None], anthropic: bool = False) -> None:
        """`quota`: the admission's rate-limit headers, sent with the early headers (`anthropic`:
        in Anthropic's names too, see `sse_response`)."""
        self._request = request
        self._request_id = request_id
        self._quota = quota
        self._anthropic = anthropic
        self._interval = interval
        self._on_heartbeat = on_heartbeat
        self._stopped = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # the heartbeat task's sleep
        self._handler: asyncio.Task[Any] | None = None  # the request's task, which drain cancels
        self._cancelling = 0
        self._registry: set[Stoppable] | None = None
        #: drain's reason, once it stopped this stream
        self.halted: str | None = None
        #: the prepared response once the headers went out (then the answer must be a stream)
        self.response: web.StreamResponse | None = None
        #: a heartbeat's write failed: the client went away
        self.gone: OSError | None = None
        self._write: Write | None = None  # the heartbeats' once the headers went out

    @classmethod
    def pinging(cls, write: Write, interval: float, on_heartbeat: Callable[[], None]) -> EarlyCommit:
        """Heartbeats only, into a stream whose headers went out already (`write`): a
        mid-stream resume's wait for its continuation."""
        pings = cls(None, "", {}, interval, on_heartbeat)
        pings._write = write
        return pings

    async def around(self, waiting: Awaitable[T], at: float, registry: set[Stoppable]) -> T:
        """`await waiting` with heartbeats from loop time `at`; `Stopped` if drain stops it."""
        self.start(at, registry)
        try:
            return await waiting
        except asyncio.CancelledError:
            stopped = self.interrupted()
            if stopped is None:  # the client went away
                raise
            raise stopped from None
        finally:
            await self.close()

    def start(self, at: float, registry: set[Stoppable]) -> None:
        """Send the headers and the first heartbeat at loop time `at`, unless stopped first.
        Until `close()`, drain finds it in `registry` (the runtime's streams to stop)."""
        handler = asyncio.current_task()
        assert handler is not None
        self._handler, self._cancelling = handler, handler.cancelling()
        self._registry = registry
        registry.add(self)
        self._timer = asyncio.get_running_loop().call_at(at, self._begin)

    def stop(self, reason: str) -> None:
        """Drain ran out of time: end the handler's wait for an upstream (see `interrupted`)."""
        if self.halted is None and self._handler is not None:
            self.halted = reason
            self._handler.cancel()

    def interrupted(self) -> Stopped | None:
        """In the handler's `except CancelledError`: `Stopped` when the cancel was drain's
        (then it is no cancel any more), None when it was someone else's (the client gone)."""
        if self.halted is None or self._handler is None:
            return None
        if self._handler.uncancel() > self._cancelling:
            return None  # cancelled from elsewhere too: that one wins
        return Stopped(self.halted)

    async def close(self) -> None:
        """No heartbeat after this returns; a started write is let finish."""
        if self._registry is not None:
            self._registry.discard(self)
            self._registry = None
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        task, self._task = self._task, None
        if task is not None:
            await task

    def _begin(self) -> None:
        self._timer = None
        if not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time()
        try:
            while not self._stopped:
                if self._write is None:
                    assert self._request is not None  # only `pinging` makes one without
                    response = sse_response(self._request_id, self._quota, self._anthropic)
                    await response.prepare(self._request)
                    self.response, self._write = response, response.write
                await self._write(HEARTBEAT)
                self._on_heartbeat()
                if self._stopped:
                    return
                at = max(at + self._interval, loop.time())
                wake = self._wake = loop.create_future()
                timer = loop.call_at(at, _resolve, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                    self._wake = None
        except OSError as exc:  # ConnectionResetError and aiohttp's subclasses of it
            self.gone = exc


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
