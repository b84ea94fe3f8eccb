"""The resumable streams' event log (`gateway.streams`): memory, and Redis Streams over a real
connection (the shared test Redis under a key prefix of this test's own, or a private
`redis-server` that a test kills or pauses)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio

from gateway.streams.log import Batch, EventLog, LogFull, Unavailable, split_events
from gateway.streams.memory import MemoryLog
from gateway.streams.redis import RedisLog
from tests._proc import eventually
from tests.conftest_redis import TEST_REDIS_URL, shared_prefix

if TYPE_CHECKING:
    from tests.conftest_redis import RedisProcess


def message(text: str) -> bytes:
    return b'event: message\ndata: {"content":"' + text.encode() + b'","done":false}\n\n'


DONE = b"event: done\ndata: {}\n\n"
ERROR = b'event: error\ndata: {"code":499,"message":"cancelled"}\n\n'


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared test Redis; its keys are deleted after."""
    yield from shared_prefix("streams")


def redis_log(url: str, prefix: str, **kwargs: float) -> RedisLog:
    options = {"keep_seconds": 30.0, "max_bytes": 10_000, "abandon_seconds": 5.0, **kwargs}
    return RedisLog(url, prefix=prefix, keep_seconds=options["keep_seconds"],
                    max_bytes=int(options["max_bytes"]), abandon_seconds=options["abandon_seconds"])


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
    made: EventLog
    if request.param == "memory":
        made = MemoryLog(keep_seconds=30, max_bytes=10_000)
    else:
        made = redis_log(TEST_REDIS_URL, request.getfixturevalue("prefix"))
    yield made
    await made.close()


def test_a_relay_write_splits_into_whole_events_without_pings() -> None:
    assert split_events(message("a") + b": ping\n\n" + DONE) == [message("a"), DONE]


async def test_events_are_numbered_and_read_from_any_point(log: EventLog) -> None:
    writer = log.create("s1", "tenant-a")
    assert [writer.append(message(str(i))) for i in range(3)] == [1, 2, 3]
    reader = log.reader("s1")
    assert reader is not None
    assert await reader.read(0, 1) == Batch(1, [message("0"), message("1"), message("2")], False)
    assert await reader.read(2, 1) == Batch(3, [message("2")], False)
    info = await log.info("s1")
    assert info is not None and info.tenant == "tenant-a"
    assert await log.info("nope") is None


async def test_the_live_tail_wakes_every_waiting_reader_at_the_append(log: EventLog) -> None:
    writer = log.create("s1", "t")
    readers = [log.reader("s1") for _ in range(3)]
    waiting = [asyncio.ensure_future(r.read(0, 30)) for r in readers if r is not None]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)
    writer.append(message("x"))
    batches = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert batches == [Batch(1, [message("x")], False)] * 3


async def test_a_wait_with_nothing_new_ends_empty_for_a_heartbeat(log: EventLog) -> None:
    log.create("s1", "t").append(message("x"))
    reader = log.reader("s1")
    assert reader is not None
    assert await reader.read(1, 0.05) == Batch(2, [], False)


async def test_done_ends_the_stream_and_end_adds_nothing_after_it(log: EventLog) -> None:
    writer = log.create("s1", "t")
    writer.append(message("x"))
    writer.append(DONE)
    writer.end(ERROR)
    reader = log.reader("s1")
    assert reader is not None
    assert await reader.read(0, 1) == Batch(1, [message("x"), DONE], True)
    assert await reader.read(2, 1) == Batch(3, [], True)  # at once: nothing more will come


async def test_end_without_a_last_event_appends_the_error(log: EventLog) -> None:
    writer = log.create("s1", "t")
    writer.append(message("x"))
    writer.end(ERROR)
    reader = log.reader("s1")
    assert reader is not None
    assert await reader.read(1, 1) == Batch(2, [ERROR], True)


async def test_past_max_bytes_an_append_is_refused_but_the_error_gets_in() -> None:
    log = MemoryLog(keep_seconds=30, max_bytes=len(message("x")) * 2)
    writer = log.create("s1", "t")
    writer.append(message("x"))
    writer.append(message("x"))
    with pytest.raises(LogFull):
        writer.append(message("x"))
    writer.end(ERROR)
    reader = log.reader("s1")
    assert reader is not None
    assert (await reader.read(0, 1)).events == [message("x"), message("x"), ERROR]


async def test_an_ended_stream_is_kept_keep_seconds_then_unknown() -> None:
    log = MemoryLog(keep_seconds=0.2, max_bytes=10_000)
    writer = log.create("s1", "t")
    assert (log.generating, log.kept) == (1, 0)
    writer.append(DONE)
    assert (log.generating, log.kept) == (0, 1)
    assert await log.info("s1") is not None
    await eventually(lambda: log.reader("s1") is None, timeout=5, what="the stream forgotten")
    assert await log.info("s1") is None and (log.generating, log.kept) == (0, 0)


# -- Redis: another process's view ---------------------------------------------------------


@pytest.mark.redis
async def test_another_process_reads_exactly_the_rest_and_the_live_tail(prefix: str) -> None:
    here, there = redis_log(TEST_REDIS_URL, prefix), redis_log(TEST_REDIS_URL, prefix)
    try:
        writer = here.create("s1", "tenant-a")
        for i in range(5):
            writer.append(message(str(i)))
        info = await eventually(lambda: there.info("s1"), what="the stream in Redis")
        assert info.tenant == "tenant-a" and not info.local
        remote = there.reader("s1")
        batch = await eventually(lambda: remote.read(2, 0.1), what="events 3..5 in Redis")
        assert batch == Batch(3, [message("2"), message("3"), message("4")], False)
        tail = asyncio.ensure_future(remote.read(5, 10))  # XREAD BLOCK
        writer.append(DONE)
        assert await asyncio.wait_for(tail, 10) == Batch(6, [DONE], True)
        assert await remote.read(6, 1) == Batch(7, [], True)  # ended: no block
        assert await there.reader("s1").read(6, 1) == Batch(7, [], True)  # a fresh reader too
        client = redis.asyncio.from_url(TEST_REDIS_URL)
        try:  # expiry: keep_seconds once ended
            ttl = await eventually(lambda: _ended_ttl(client, prefix + "s1"), what="keep ttl")
            assert 25_000 < ttl <= 30_000
        finally:
            await client.aclose()
    finally:
        await here.close()
        await there.close()


async def _ended_ttl(client: redis.asyncio.Redis, key: str) -> int | None:
    ttl = int(await client.pttl(key))
    return ttl if 0 < ttl <= 30_000 else None


@pytest.mark.redis
async def test_a_remote_subscriber_marks_the_stream_watched(prefix: str) -> None:
    here, there = redis_log(TEST_REDIS_URL, prefix), redis_log(TEST_REDIS_URL, prefix)
    try:
        here.create("s1", "t").append(message("x"))
        assert not await here.watched("s1")
        await eventually(lambda: there.info("s1"))
        await there.reader("s1").read(0, 0.1)
        await eventually(lambda: here.watched("s1"), what="watched")
    finally:
        await here.close()
        await there.close()


@pytest.mark.redis
async def test_redis_killed_mid_stream_local_goes_on_remote_fails_cleanly(
    redis_process: RedisProcess,
) -> None:
    prefix = "gw:test:streams:"
    here, there = redis_log(redis_process.url, prefix), redis_log(redis_process.url, prefix)
    try:
        writer = here.create("s1", "t")
        writer.append(message("0"))
        await eventually(lambda: there.info("s1"))
        await redis_process.kill()
        for i in range(1, 4):  # never waits on the dead Redis
            writer.append(message(str(i)))
        local = here.reader("s1")
        assert (await local.read(0, 1)).events == [message(str(i)) for i in range(4)]
        with pytest.raises(Unavailable):
            await asyncio.wait_for(there.reader("s1").read(1, 0.5), 10)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(there.info("s1"), 10)
    finally:
        await here.close()
        await there.close()


@pytest.mark.redis
async def test_redis_paused_mid_stream_a_remote_read_ends_and_the_gap_is_marked(
    redis_process: RedisProcess,
) -> None:
    prefix = "gw:test:streams:"
    here, there = redis_log(redis_process.url, prefix), redis_log(redis_process.url, prefix)
    assert redis_process.child is not None
    try:
        writer = here.create("s1", "t")
        writer.append(message("0"))
        await eventually(lambda: there.info("s1"))
        remote = there.reader("s1")
        assert (await remote.read(0, 0.1)).events == [message("0")]
        redis_process.child.send(signal.SIGSTOP)
        try:
            writer.append(message("1"))  # its mirror times out: a gap in Redis
            with pytest.raises(Unavailable):  # the remote read does not hang on the paused Redis
                await asyncio.wait_for(remote.read(1, 0.5), 10)
            await eventually(lambda: here.errors > 0, what="the mirror's failed write")
        finally:
            redis_process.child.send(signal.SIGCONT)
        writer.append(message("2"))  # not mirrored any more
        local = here.reader("s1")
        assert (await local.read(0, 1)).events == [message("0"), message("1"), message("2")]
        await eventually(lambda: here.broken.get("s1"), what="the broken marker written")
        with pytest.raises(Unavailable):
            await asyncio.wait_for(there.reader("s1").read(1, 0.5), 10)
    finally:
        await here.close()
        await there.close()


@pytest.mark.redis
async def test_a_new_stream_is_findable_elsewhere_once_published(prefix: str) -> None:
    here, there = redis_log(TEST_REDIS_URL, prefix), redis_log(TEST_REDIS_URL, prefix)
    try:
        here.create("s1", "tenant-a")
        await asyncio.wait_for(here.published("s1"), 10)  # what the 201 waits for
        info = await there.info("s1")
        assert info is not None and info.tenant == "tenant-a"
    finally:
        await here.close()
        await there.close()


def test_several_workers_keep_streams_in_redis() -> None:
    from gateway.config import config_from_dict
    from gateway.errors import ConfigError
    from gateway.streams.hub import make_log
    from tests.conftest import UPSTREAM_ENV, raw_config

    sections = {"server": {"workers": 2}, "ratelimit": {"backend": "redis"}}
    config = config_from_dict(raw_config("http://127.0.0.1:9", **sections), UPSTREAM_ENV, source="<t>")
    assert config.streams.backend == "memory" and isinstance(make_log(config), RedisLog)
    single = config_from_dict(raw_config("http://127.0.0.1:9"), UPSTREAM_ENV, source="<t>")
    assert isinstance(make_log(single), MemoryLog)
    with pytest.raises(ConfigError, match=r"streams\.backend: more than 1 worker"):
        config_from_dict(raw_config("http://127.0.0.1:9", streams={"backend": "memory"}, **sections),
                         UPSTREAM_ENV, source="<t>")
