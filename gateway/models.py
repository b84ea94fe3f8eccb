"""Provider model lists: for every upstream with a glob in `models`, the names the provider
itself lists (`GET {base_url}/models`, in its dialect's shape and auth), asked at start and
every `models_refresh_seconds` by one background task, and served from memory.

Rules:
- `/v1/models` never waits on an upstream: it reads what is known (`ModelLists.matching`).
- A failed refresh keeps the last good list; it is logged once when an upstream starts
  failing (and once when it recovers), counted every time, and retried sooner
  (`RETRY_SECONDS`) than the regular period.
- A reload wakes the task: an upstream that is new, or whose URL, key or headers changed, is
  asked at once; a removed one's list is forgotten.
- The list request is bounded: its own timeouts, `MAX_PAGES` pages, `MAX_LIST_BYTES` a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from .config import Config, UpstreamSpec
from .dialects import DIALECTS
from .live import LiveConfig
from .metrics import Metrics
from .state import LIVE, LOGGER, METRICS, MODEL_LISTS, SESSION

#: a failed list is asked again after this (or its own period, when shorter)
RETRY_SECONDS = 30.0
MAX_PAGES = 50
MAX_LIST_BYTES = 4 * 1024 * 1024


def is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def listed_upstreams(config: Config) -> list[UpstreamSpec]:
    """The upstreams whose model list is asked for: those with a glob in `models`."""
    return [u for u in config.upstreams if any(is_glob(p) for p in u.models)]


def _source(upstream: UpstreamSpec) -> tuple[object, ...]:
    """What the list depends on: a reload that changes any of it asks again at once."""
    return (upstream.dialect, upstream.base_url, upstream.auth_header, upstream.api_key,
            tuple(sorted(upstream.headers.items())), tuple(sorted(upstream.query.items())))


class ModelListError(Exception):
    """The provider's answer was no model list."""


class ModelLists:
    """The last good list of each listed upstream (by name), and the task that refreshes them."""

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, ...]] = {}
        self._failing: set[str] = set()
        self._wake = asyncio.Event()

    def names(self, upstream: str) -> tuple[str, ...]:
        """What `upstream` last listed (empty until a refresh succeeded)."""
        return self._names.get(upstream, ())

    def matching(self, config: Config) -> Iterator[tuple[str, str]]:
        """(model, upstream) for every listed name that matches its upstream's globs."""
        for upstream in listed_upstreams(config):
            globs = [p for p in upstream.models if is_glob(p)]
            for name in self._names.get(upstream.name, ()):
                if any(fnmatch.fnmatchcase(name, glob) for glob in globs):
                    yield name, upstream.name

    def wake(self) -> None:
        """The config changed (a reload): look at its upstreams now."""
        self._wake.set()

    async def keep_fresh(self, session: aiohttp.ClientSession, live: LiveConfig, metrics: Metrics,
                         logger: FilteringBoundLogger) -> None:
        """Forever: refresh each listed upstream when it is due, then sleep until the next is
        (or a reload wakes it)."""
        due: dict[str, float] = {}
        sources: dict[str, tuple[object, ...]] = {}
        while True:
            self._wake.clear()
            upstreams = listed_upstreams(live.current.config)
            for gone in set(self._names) - {u.name for u in upstreams}:
                self._names.pop(gone, None)
            now = time.perf_counter()
            todo = [u for u in upstreams
                    if due.get(u.name, 0.0) <= now or sources.get(u.name) != _source(u)]
            results = await asyncio.gather(*(self.refresh(session, u, metrics, logger) for u in todo))
            for upstream, ok in zip(todo, results, strict=True):
                period = upstream.models_refresh_seconds
                due[upstream.name] = time.perf_counter() + (period if ok else min(period, RETRY_SECONDS))
                sources[upstream.name] = _source(upstream)
            wait = min((due[u.name] for u in upstreams), default=None)
            with contextlib.suppress(TimeoutError):
                delay = None if wait is None else max(0.0, wait - time.perf_counter())
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def refresh(self, session: aiohttp.ClientSession, upstream: UpstreamSpec,
                      metrics: Metrics, logger: FilteringBoundLogger) -> bool:
        """Ask one upstream for its list; True when it answered with one."""
        label = metrics.upstream(upstream.name)
        try:
            names = await fetch_models(session, upstream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure keeps the last good list; the task lives on
            metrics.child(metrics.models_refresh, label, "error").inc()
            if upstream.name not in self._failing:
                self._failing.add(upstream.name)
                logger.warning("models_refresh_failed", upstream=upstream.name, error=_describe(exc),
                               kept=len(self._names.get(upstream.name, ())),
                               retry_seconds=min(upstream.models_refresh_seconds, RETRY_SECONDS))
            return False
        metrics.child(metrics.models_refresh, label, "ok").inc()
        if upstream.name in self._failing:
            self._failing.discard(upstream.name)
            logger.info("models_refresh_recovered", upstream=upstream.name, models=len(names))
        if self._names.get(upstream.name) != names:
            logger.info("models_listed", upstream=upstream.name, models=len(names))
        self._names[upstream.name] = names
        return True


def _describe(exc: Exception) -> str:
    if isinstance(exc, ModelListError):
        return str(exc)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve upstream host {exc.host!r}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


async def fetch_models(session: aiohttp.ClientSession, upstream: UpstreamSpec) -> tuple[str, ...]:
    """Every page of the upstream's model list, with its dialect's auth and its static headers
    and query; the names sorted, without duplicates."""
    dialect = DIALECTS[upstream.dialect]
    headers = {**dialect.default_headers, **upstream.headers}
    key = upstream.api_key.get_secret_value()
    if key:
        headers.update(dialect.auth_headers(key, upstream.auth_header))
    timeout = aiohttp.ClientTimeout(total=upstream.first_byte_timeout_seconds,
                                    sock_connect=upstream.connect_timeout_seconds)
    names: set[str] = set()
    after: str | None = None
    for _ in range(MAX_PAGES):
        async with session.get(dialect.models_url(upstream, after), headers=headers,
                               timeout=timeout, allow_redirects=False) as response:
            body = await _read_capped(response)
            if response.status != 200:
                raise ModelListError(f"HTTP {response.status} from {upstream.name}'s model list")
        page, after = dialect.parse_models(_json(body))
        names.update(page)
        if after is None:
            return tuple(sorted(names))
    raise ModelListError(f"the model list ran past {MAX_PAGES} pages")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ModelListError("the model list is not JSON") from None


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_LIST_BYTES:
            raise ModelListError(f"the model list is over {MAX_LIST_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)




async def model_lists_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the refresh task once the client session exists; cancel it before it closes."""
    task = asyncio.create_task(app[MODEL_LISTS].keep_fresh(app[SESSION], app[LIVE], app[METRICS],
                                                           app[LOGGER]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
