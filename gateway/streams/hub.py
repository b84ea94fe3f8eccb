"""The app's resumable streams: the event log (memory or Redis) and the generations running
in this process, created and closed in a cleanup context (`streams_ctx`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from ..config import Config
from ..errors import Shed
from ..state import CONFIG, METRICS, STREAMS
from .generation import ClientCancelled, Generation
from .log import EventLog
from .memory import MemoryLog

#: how often, with workers, this worker's stream gauges are written
GAUGE_SECONDS = 0.5
#: at shutdown, how long generations get to append their error event and settle
STOP_SECONDS = 5.0


class Streams:
    def __init__(self, log: EventLog, abandon_seconds: float) -> None:
        self.log = log
        self.abandon_seconds = abandon_seconds
        self.generations: dict[str, Generation] = {}  # running in this process

    def counts(self) -> tuple[int, int]:
        """(generating, kept) streams of this process."""
        log = self.log
        return getattr(log, "generating", 0), getattr(log, "kept", 0)

    async def stop_all(self, reason: str) -> None:
        """Every generation still running ends with one error event (bounded)."""
        tasks = []
        for generation in list(self.generations.values()):
            generation.cancel(Shed(reason, reason="draining", retry_after=5))
            if generation.task is not None:
                tasks.append(generation.task)
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_SECONDS)

    async def cancel_asked(self) -> None:
        """Cancels asked through another process (DELETE there), for generations running here."""
        while True:
            generation = self.generations.get(await self.log.cancelled())
            if generation is not None:
                generation.cancel(ClientCancelled("the stream was cancelled by its creator"))


def make_log(config: Config) -> EventLog:
    """The configured backend; with several workers and no backend set, Redis (a browser's
    reconnect may reach any worker; workers need ratelimit's Redis anyway)."""
    streams = config.streams
    implied = config.server.workers > 1 and "backend" not in streams.model_fields_set
    if streams.backend == "redis" or implied:
        from .redis import RedisLog

        return RedisLog(config.ratelimit.redis_url, prefix=config.ratelimit.key_prefix + "st:",
                        keep_seconds=streams.keep_seconds, max_bytes=streams.max_bytes,
                        abandon_seconds=streams.abandon_seconds)
    return MemoryLog(keep_seconds=streams.keep_seconds, max_bytes=streams.max_bytes)


async def streams_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    hub = app[STREAMS] = Streams(make_log(config), config.streams.abandon_seconds)
    metrics = app[METRICS]
    gauge = metrics.resumable_streams
    publisher: asyncio.Task[None] | None = None
    if metrics.multiprocess:  # callbacks can't cross processes: each worker writes its own

        async def publish() -> None:
            while True:
                generating, kept = hub.counts()
                gauge.labels("generating").set(generating)
                gauge.labels("kept").set(kept)
                await asyncio.sleep(GAUGE_SECONDS)

        publisher = asyncio.create_task(publish())
    else:
        gauge.labels("generating").set_function(lambda: hub.counts()[0])
        gauge.labels("kept").set_function(lambda: hub.counts()[1])
    cancels = asyncio.create_task(hub.cancel_asked())
    yield
    cancels.cancel()
    await asyncio.wait([cancels])
    if publisher is not None:
        publisher.cancel()
    await hub.stop_all("the gateway is shutting down")
    await hub.log.close()
