"""Client connections: the header and body timeouts, the keep-alive count, and the connection cap.

aiohttp bounds only keep-alive idleness itself; a peer that sends its headers or its body a
byte at a time would hold a socket forever. `GuardedRunner` serves the app through
`GuardedHandler`, aiohttp's `RequestHandler` with those clocks added.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server
from structlog.typing import FilteringBoundLogger

from .config import Config
from .errors import RouterRefused
from .metrics import Metrics
from .routes import shape_for

#: fds kept back from the connection cap (max_connections = 0): upstream sockets beyond the
#: connector's own limit, Redis pools, log and config files
FD_RESERVE = 256
#: one log line per reason at most this often; the metric counts every close
LOG_EVERY_SECONDS = 10.0

# What this module relies on of aiohttp's internals (aiohttp 3.14), all here:
# - RequestHandler: connection_made/connection_lost/data_received are the protocol hooks;
#   `_request_count` grows by one per parsed request head and `_messages[-1]` is the newest
#   (message, payload) until start() pops it on a later loop turn; `_process_keepalive` is what
#   the keep-alive timer calls (it sets `_force_close` when it closes); `_lingering_time` = 0
#   stops start() reading the rest of a body that timed out; close()/force_close().
#   A parse error is queued as a message of its own (`_ErrInfo`, with an empty finished
#   payload); the C parser drops the payload it was filling without finishing or failing it.
# - Server: `_kwargs` (the RequestHandler kwargs) and `_loop`; `__call__` is the protocol
#   factory the site hands to loop.create_server.
# - AppRunner._make_server: runs the app's startup and returns the app's Server.


class CloseLog:
    """Counts every close in `gateway_client_connections_closed_total{reason}` and logs one line
    per reason at most every LOG_EVERY_SECONDS with how many closes it stands for: a flood of
    slow clients must not become a flood of log lines."""

    def __init__(self, metrics: Metrics, logger: FilteringBoundLogger,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._metrics = metrics
        self._logger = logger
        self._clock = clock
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def __call__(self, reason: str) -> None:
        self._metrics.closed_connections.labels(reason).inc()
        count = self._pending.get(reason, 0) + 1
        now = self._clock()
        if now - self._last.get(reason, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
            self._last[reason] = now
            self._pending[reason] = 0
            self._logger.info("client_connection_closed", reason=reason, count=count)
        else:
            self._pending[reason] = count


class Guard:
    """The limits every connection of one server shares, and how many are open."""

    def __init__(self, *, header_timeout: float, body_timeout: float, max_connections: int,
                 on_close: Callable[[str], None]) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.on_close = on_close
        self.open = 0


def connection_cap(config: Config, soft: int | None = None) -> int:
    """`server.max_connections`, or with 0 the fd soft limit less what upstream calls and
    files need: the upstream connector holds up to max_concurrent_streams + 100 sockets, but
    never more than half the fds are kept for it, so a small limit still serves clients."""
    if config.server.max_connections:
        return config.server.max_connections
    if soft is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    upstream = min(config.limits.max_concurrent_streams + 100, soft // 2)
    return max(16, soft - upstream - min(FD_RESERVE, soft // 8))


def raise_fd_limit() -> tuple[int, int]:
    """Raise the fd soft limit to the hard one (as nginx's `worker_rlimit_nofile` does): a
    default soft limit of 1,024 would cap a gateway at a few hundred streams. (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # not allowed here: keep what we have; the cap follows it
    return soft, hard


class GuardedHandler(RequestHandler):
    """One client connection. The header clock runs from the connection's open, and on a kept-
    alive connection from the first byte of the next request (the idle time before it is the
    keep-alive timeout's), until the request head is parsed. The body clock runs from there
    until the whole body is in; past it the handler's read raises 408 and the connection
    closes after the answer."""

    __slots__ = ("_guard", "_counted", "_timer", "_body", "_closed_for", "_path")

    def __init__(self, manager: Server, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None
        self._closed_for: str | None = None
        self._path = ""  # the request target last seen: a parse error's answer takes its shape

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> StreamResponse:
        """aiohttp's answer to a request it could not parse quotes the offending bytes
        (`Got more than 8190 bytes when reading: b'Authorization: Bearer ...'`): answer with
        the status and the error's type only, never the request's own bytes."""
        if status == 500 or exc is None:
            return super().handle_error(request, status, exc, message)
        reason = f"the request could not be parsed ({type(exc).__name__})"
        answer = super().handle_error(request, status, exc, f"{status} {HTTPStatus(status).phrase}: {reason}")
        # aiohttp's error request has no path of its own when the parse failed mid-request
        path = request.path if request.path != "/" else self._path
        if path.startswith(("/v1/", "/api/")):  # an API client reads its own shape
            body, content_type = shape_for(path).answer(RouterRefused(status, reason))
            answer = web.Response(status=status, body=body, content_type=content_type)
            answer.force_close()
        return answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open >= guard.max_connections:
            # Closed before aiohttp sees it: no task, no parser, no keep-alive timer.
            transport.close()
            guard.on_close("max_connections")
            return
        guard.open += 1
        self._counted = True
        super().connection_made(transport)
        self._arm(guard.header_timeout, self._header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._counted:
            return  # refused at the cap: aiohttp never knew it
        self._counted = False
        self._guard.open -= 1
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        requests = self._request_count
        if data[:1].isupper():  # a request line starts here (a method): note its path
            self._path = _target(data)
        super().data_received(data)
        if self._request_count != requests and self._body is not None and not self._body.is_eof():
            # No request head can follow an unfinished body: the parser failed inside the body
            # (a bad chunk size, chunk data without its CRLF, an overflowing size) and queued its
            # error as a new message. aiohttp would leave the first request waiting for the rest
            # of its body forever; fail that body instead (the handler answers 400 in the
            # route's shape) and close the connection after that answer.
            self._broken_body()
        elif self._request_count != requests:  # a request head is in
            body = self._messages[-1][1] if self._messages else None
            if body is not None and not body.is_eof():
                self._body = body
                self._arm(self._guard.body_timeout, self._body_timeout)
            else:
                self._body = None
                self._disarm()
        elif self._body is not None:
            if self._body.is_eof():
                self._body = None
                self._disarm()
        elif self._timer is None and data and not (self._close or self._force_close):
            # The first byte of a request on a kept-alive connection.
            self._arm(self._guard.header_timeout, self._header_timeout)

    def _broken_body(self) -> None:
        body, self._body = self._body, None
        self._disarm()
        assert body is not None
        self._closed("broken_body")
        body.set_exception(web.HTTPBadRequest(reason="the request body's chunked framing is broken"))
        self._lingering_time = 0.0
        self.close()

    def _process_keepalive(self) -> None:
        super()._process_keepalive()
        if self._force_close and self._closed_for is None:
            self._closed("keepalive_timeout")

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _closed(self, reason: str) -> None:
        self._closed_for = reason
        self._guard.on_close(reason)

    def _header_timeout(self) -> None:
        self._timer = None
        if self.transport is None or self._force_close:
            return
        self._closed("header_timeout")
        self.force_close()

    def _body_timeout(self) -> None:
        self._timer = None
        body, self._body = self._body, None
        if body is None or body.is_eof() or self.transport is None or self._force_close:
            return
        self._closed("body_timeout")
        # The handler's read raises it (the middleware answers 408 in the route's shape); no
        # lingering read of the rest, and the connection closes after that answer.
        body.set_exception(web.HTTPRequestTimeout(text="the request body did not arrive in time"))
        self._lingering_time = 0.0
        self.close()


def _target(data: bytes) -> str:
    """The path of a request line (`POST /v1/messages?x HTTP/1.1`), or "" when there is none."""
    line = data[:2048].split(b"\r\n", 1)[0].split(b" ")
    if len(line) < 2 or not line[1].startswith(b"/"):
        return ""
    return line[1].split(b"?", 1)[0].decode("latin-1")


class GuardedServer(Server):
    """aiohttp's low-level server, building `GuardedHandler`s."""

    def __init__(self, server: Server, guard: Guard) -> None:
        super().__init__(server.request_handler, request_factory=server.request_factory,
                         handler_cancellation=server.handler_cancellation, loop=server._loop,
                         **server._kwargs)
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, self.guard, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """`web.AppRunner` whose server guards every connection with `guard`."""

    def __init__(self, app: web.Application, guard: Guard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard

    async def _make_server(self) -> Server:
        return GuardedServer(await super()._make_server(), self._guard)


def guarded_runner(app: web.Application, config: Config, metrics: Metrics,
                   logger: FilteringBoundLogger, **kwargs: Any) -> GuardedRunner:
    """The runner `serve` uses: the server.client_* timeouts, keep-alive and connection cap."""
    server = config.server
    guard = Guard(header_timeout=server.client_header_timeout_seconds,
                  body_timeout=server.client_body_timeout_seconds,
                  max_connections=connection_cap(config), on_close=CloseLog(metrics, logger))
    return GuardedRunner(app, guard, keepalive_timeout=server.keepalive_timeout_seconds, **kwargs)
