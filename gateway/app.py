"""Wiring: build the aiohttp app from a `Config` — routes, middlewares, CORS, and the
long-lived objects under their `state.py` keys: plain values set here (config, metrics, the
slot queue), those that hold connections or tasks (client session, limiter, budget, model
lists, stream logs, response owners) made and closed in `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import aiohttp_cors
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from structlog.typing import FilteringBoundLogger

from .admin import ADMIN_ROUTES
from .admin_keys import KEY_ROUTES
from .admission.budget import Budget, MemoryBudget
from .admission.limiter import Limiter, MemoryLimiter
from .admission.queue import SlotQueue
from .admission.share import worker_share
from .admission.ticket import Gate
from .breaker import Breakers
from .config import Config
from .errors import GatewayError
from .live import LiveConfig, Runtime, Snapshot
from .logs import make_logger
from .metrics import Metrics
from .middleware import RequestIds, gateway_middleware
from .models import ModelLists, model_lists_ctx
from .response_owners import response_owners_ctx
from .routes import ROUTES
from .state import (
    BREAKERS,
    CONFIG,
    CONFIG_PATH,
    DEMO_KEY,
    GATE,
    LIMITER,
    LIVE,
    LOGGER,
    METRICS,
    MODEL_LISTS,
    QUEUE,
    REQUEST_IDS,
    RUNTIME,
    SESSION,
    STORE,
    UPSTREAMS,
)
from .store.base import StoreUnavailable
from .store.runtime import StoreState, install_store, spent_this_period
from .streams.hub import streams_ctx
from .ui import index_page
from .upstream import UpstreamClient, reachable
from .upstream.health import follow_config

READY_PROBE_SECONDS = 2.0
GAUGE_SECONDS = 0.5


def build_app(
    config: Config, logger: FilteringBoundLogger | None = None, *, demo_key: str | None = None,
    config_path: str | None = None, worker: int = 0,
) -> web.Application:
    """`config_path`: the file `config` came from, which a reload re-reads. `worker`: this
    process's index among `server.workers` (it holds its share of the stream limits)."""
    app = web.Application(
        client_max_size=config.server.max_body_bytes, middlewares=[gateway_middleware],
        # Request bodies are decoded by `body.decode_body` (bounded, every ending checked):
        # this reaches every runner's connection handler (`serve`'s, the tests').
        # A request line may be as long as a body (the GET form of /api/chat/stream carries its
        # messages in the URL; one over max_body_bytes is refused in its route's shape, 414).
        handler_args={"auto_decompress": False,
                      "max_line_size": max(8190, 2 * config.server.max_body_bytes)})
    app[CONFIG] = config
    app[REQUEST_IDS] = RequestIds()
    app[LOGGER] = logger or make_logger()
    app[METRICS] = metrics = Metrics(config)
    app[LIVE] = LiveConfig(Snapshot.of(config))
    install_store(app, config, config_path)  # runtime tenants and keys, spend rows ([store])
    app[RUNTIME] = Runtime()
    if config_path:
        app[CONFIG_PATH] = config_path
    if demo_key is not None:
        app[DEMO_KEY] = demo_key  # the chat page offers it (see ui.py)
    limits, workers = config.limits, config.server.workers
    app[QUEUE] = queue = SlotQueue(  # the limits hold for all workers together: a share each
        worker_share(limits.max_concurrent_streams, workers, worker),
        worker_share(limits.max_queue, workers, worker), limits.queue_timeout_seconds)
    if metrics.multiprocess:  # callbacks can't cross processes: each worker writes its own
        app.cleanup_ctx.append(_publish_gauges)
    else:
        metrics.active_streams.set_function(lambda: queue.active)
        metrics.queue_depth.set_function(lambda: queue.depth)
    app[MODEL_LISTS] = ModelLists()  # provider model lists, refreshed in the background
    app.cleanup_ctx.extend([_client_session, _limiter, model_lists_ctx, streams_ctx, response_owners_ctx])

    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.name)
    app.add_routes([
        web.get("/metrics", make_aiohttp_handler(metrics.exposed), allow_head=False),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        *ADMIN_ROUTES,  # 404 unless server.admin_key_sha256 is set (see admin.py)
        *KEY_ROUTES,  # tenants and keys at runtime, spend, the operator's page (same rule)
    ])
    if config.server.ui:
        app.router.add_get("/", index_page)
    if config.server.cors_origins:
        _add_cors(app, config.server.cors_origins)
    return app


def _add_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        expose_headers=("x-request-id", "retry-after", "x-ratelimit-limit-requests",
                        "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
                        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                        "x-ratelimit-reset-tokens"),
        allow_headers="*",  # SDKs in browsers send their own (x-stainless-*, anthropic-*)
        # Routes sharing a path (GET and DELETE /api/chat/streams/{id}, POST and GET
        # /api/chat/stream) are separate resources with their own names, and a preflight is
        # matched to the first one only: the methods are allowed here, so each passes its own.
        allow_methods=("GET", "POST", "DELETE"),
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        if route.method in ("GET", "POST", "DELETE"):
            cors.add(route)


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    """One shared upstream session with a bounded connector; no total timeout (streams are
    long): the upstream's own connect / first-byte / idle / total timeouts apply per request."""
    limits = app[CONFIG].limits
    connector = aiohttp.TCPConnector(
        limit=limits.max_concurrent_streams + 100, limit_per_host=0, ttl_dns_cache=300,
        enable_cleanup_closed=False)
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True, skip_auto_headers=("User-Agent",),
        # No cookie jar: an upstream's Set-Cookie must not ride along on other tenants'
        # requests, and an empty jar still costs a filter per request.
        cookie_jar=aiohttp.DummyCookieJar())
    app[SESSION] = session
    breakers = app[BREAKERS] = Breakers(time.perf_counter)
    app[UPSTREAMS] = UpstreamClient(
        session, app[METRICS], breakers=breakers, logger=app[LOGGER],
        max_response_bytes=app[CONFIG].server.max_response_bytes)
    # Every concrete target of the config has its breaker (and gauge series) from the start.
    follow_config(app[METRICS], breakers, app[LIVE].current.config, set())
    yield
    await session.close()


async def _publish_gauges(app: web.Application) -> AsyncIterator[None]:
    """With workers: this worker's slot and queue gauges, written every GAUGE_SECONDS."""

    async def publish() -> None:
        queue, metrics = app[QUEUE], app[METRICS]
        while True:
            metrics.active_streams.set(queue.active)
            metrics.queue_depth.set(queue.depth)
            await asyncio.sleep(GAUGE_SECONDS)

    task = asyncio.create_task(publish())
    yield
    task.cancel()


async def _limiter(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].ratelimit
    limiter: Limiter
    if config.backend == "redis":
        from .admission.budget_redis import RedisBudget
        from .admission.redis import RedisLimiter

        metrics, logger = app[METRICS], app[LOGGER]

        def on_error(exc: Exception) -> None:
            metrics.limiter_errors.inc()
            logger.warning("ratelimit_backend_error", error=type(exc).__name__,
                           fail_open=config.fail_open)

        limiter = RedisLimiter(config.redis_url, fail_open=config.fail_open, on_error=on_error,
                               prefix=config.key_prefix + "rl:")

        def on_unsettled(tenant: str, micros: int) -> None:
            logger.error("budget_settle_failed", tenant=tenant, cost_usd=micros / 1_000_000)

        budget: Budget = RedisBudget(config.redis_url, fail_open=config.fail_open, on_error=on_error,
                                     on_unsettled=on_unsettled, prefix=config.key_prefix)
    else:
        limiter, budget = MemoryLimiter(), MemoryBudget()
    app[LIMITER] = limiter
    app[GATE] = Gate(limiter, app[QUEUE], app[METRICS], app[CONFIG].server.default_max_tokens,
                     budget, app[LOGGER])
    if isinstance(budget, MemoryBudget) and (store := app.get(STORE)) is not None:
        await _seed_budget(app, budget, store)
    await _publish_budgets(app, budget)
    yield
    await limiter.close()
    await budget.close()


async def _seed_budget(app: web.Application, budget: MemoryBudget, store: StoreState) -> None:
    """The memory budget starts from what the store's spend rows say each tenant spent this
    period (a restart must not hand a tenant its whole budget again); Redis keeps its own."""
    # runtime tenants, and the file's (which win over a runtime one of the same name)
    tenants = {**store.view.tenants, **{t.name: t for t in app[LIVE].current.config.tenants}}
    try:
        spent = await spent_this_period(store, tenants.values(), datetime.now(UTC).date())
    except StoreUnavailable as exc:
        app[LOGGER].error("budget_not_seeded", error=str(exc))
        return
    for name, micros in spent.items():
        budget.seed(name, tenants[name].budget_period, micros)


async def _publish_budgets(app: web.Application, budget: Budget) -> None:
    """`gateway_budget_remaining_usd` for every budgeted tenant from the start, not only once
    it has spent something (bounded: a Redis that does not answer leaves the gauge unset)."""
    metrics = app[METRICS]
    for tenant in app[LIVE].current.config.tenants:
        if tenant.budget_usd is None:
            continue
        try:
            async with asyncio.timeout(1.0):
                remaining = await budget.remaining(tenant.name, tenant.budget_usd, tenant.budget_period)
        except (TimeoutError, GatewayError):
            continue
        metrics.budget_remaining.labels(metrics.tenant(tenant.name)).set(remaining)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Not ready while draining, when every upstream refused the gateway's credentials on its
    last attempt, or when no upstream accepts a TCP connection (probed at most every
    `READY_PROBE_SECONDS`, so frequent probes don't hammer the providers)."""
    runtime = request.app[RUNTIME]
    if runtime.draining:
        return web.json_response({"status": "draining"}, status=503)
    # One snapshot: the upstreams of the config in force now (a reload may have swapped them).
    upstreams = request.app[LIVE].current.config.upstreams
    # Every upstream refused our key on its last attempt: reachable, but nothing can answer.
    names = {u.name for u in upstreams}
    if names and names <= request.app[UPSTREAMS].refused_credentials():
        return web.json_response({"status": "upstream credentials refused"}, status=503)
    # The last probe's verdict holds for the upstreams it probed: a reload that changed them
    # probes the new list at once.
    stale = time.perf_counter() >= runtime.ready_checked + READY_PROBE_SECONDS
    if stale or runtime.ready_probed is not upstreams:
        results = await asyncio.gather(*(reachable(u) for u in upstreams))
        runtime.upstreams_reachable = any(results)
        runtime.ready_checked, runtime.ready_probed = time.perf_counter(), upstreams
    if not runtime.upstreams_reachable:
        return web.json_response({"status": "no upstream reachable"}, status=503)
    return web.json_response({"status": "ready"})
