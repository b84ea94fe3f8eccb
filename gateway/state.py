"""What the app holds: typed `web.AppKey`s for every long-lived object, and the request's record.

Created and closed in `app.py`'s cleanup contexts; handlers only read them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from .admission.limiter import Limiter
from .admission.queue import StreamQueue
from .auth import Authenticator
from .config import Config, Tenant
from .dialects import Usage
from .metrics import Metrics
from .routing import Router
from .upstream import UpstreamClient


@dataclass(slots=True)
class Runtime:
    """The little that changes while serving: drain state and the requests in flight."""

    draining: bool = False
    flights: set[Flight] = field(default_factory=set)  # API requests in flight, for drain
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set when `flights` is empty
    upstreams_reachable: bool = True
    ready_checked: float = float("-inf")  # loop.time() of the last upstream probe

    def __post_init__(self) -> None:
        self.idle.set()

    def add(self, flight: Flight) -> None:
        self.flights.add(flight)
        self.idle.clear()

    def discard(self, flight: Flight) -> None:
        self.flights.discard(flight)
        if not self.flights:
            self.idle.set()


@dataclass(slots=True, eq=False)
class Flight:
    """One request's record: filled in along the way, logged and counted once at the end."""

    request_id: str
    route: str
    started: float  # loop.time() at arrival
    tenant: Tenant | None = None
    model: str | None = None
    upstream: str | None = None
    stream: bool = False
    status: int = 0
    outcome: str = "ok"
    error: str | None = None
    ttfb: float | None = None
    retries: int = 0
    queue_wait: float | None = None
    prompt_estimate: int = 0  # reserved at admission; charged once an upstream answered
    usage: Usage | None = None
    ratelimit_headers: dict[str, str] = field(default_factory=dict)
    #: a stream's upstream response, for drain to close: the relay then stops and says why
    upstream_response: aiohttp.ClientResponse | None = None
    stopped: str | None = None

    def stop(self, reason: str) -> None:
        self.stopped = reason
        if self.upstream_response is not None:
            self.upstream_response.close()


CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
LOGGER = web.AppKey("logger", FilteringBoundLogger)
AUTH = web.AppKey("auth", Authenticator)
ROUTER = web.AppKey("router", Router)
LIMITER = web.AppKey("limiter", Limiter)
QUEUE = web.AppKey("queue", StreamQueue)
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAMS = web.AppKey("upstreams", UpstreamClient)
RUNTIME = web.AppKey("runtime", Runtime)
FLIGHT = web.RequestKey("flight", Flight)  # the request's record
