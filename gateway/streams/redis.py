"""The Redis backend of the event log: each stream is a Redis Stream, so a subscriber that
reconnects through another worker or replica resumes exactly where it stopped.

Keys (under `prefix`): `{id}` the Redis Stream (entry id `0-<seq of its last event>`, field
`e` = the bytes of the events since the entry before: one XADD per stream per round trip),
`{id}:m` a hash (`t` = the creating tenant), `{id}:w` set while a subscriber in another
process watches it (for the generation's abandon check), `{id}:c` set by a DELETE through
another process (the generating process's mirror reads it in its next round trip).

Rules:
- The generation's own process keeps a local copy (`MemoryLog`): its subscribers read that,
  never Redis, and `append` never waits on Redis. Events are mirrored by ONE background task
  per process that sends whatever is pending in one pipeline (XADD, PEXPIRE) per round trip.
- Expiry: while a stream generates its keys live `keep_seconds` + LIVE_BOUND_SECONDS past the
  last flush; once it ended, `keep_seconds`.
- Redis failing mid-stream: the generation goes on for local subscribers; the stream's mirror
  stops (nothing more is written for it, so Redis never holds a gap) and, as soon as Redis
  answers again, gets the entry `1-0` (after every `0-<seq>`): a remote reader that meets it,
  or a gap, or a Redis that does not answer within its wait, raises `Unavailable`. Never a hang.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .log import EventLog, Reader, StreamInfo, Unavailable, Writer, is_terminal
from .memory import LIVE_BOUND_SECONDS, MemoryLog, MemoryStream
from .redis_tail import BROKEN_ID, READ_MARGIN_SECONDS, RemoteReader, entries

#: a write round trip's bound (a paused Redis costs the mirror, never the relay)
WRITE_TIMEOUT_SECONDS = 1.0
#: how often a cancel asked elsewhere looks whether the stream has ended
CANCEL_POLL_SECONDS = 0.05


class _Mirrored(Writer):
    """The generation's writer: the local copy first, then the mirror (no wait)."""

    __slots__ = ("_log", "_local")

    def __init__(self, log: RedisLog, local: MemoryStream) -> None:
        self._log = log
        self._local = local

    def append(self, event: bytes, *, over_bound: bool = False) -> int:
        seq = self._local.append(event, over_bound=over_bound)
        self._log.pending.append((self._local.stream_id, seq, event))
        self._log.wake.set()
        return seq

    def end(self, last: bytes) -> None:
        if not self._local.ended:
            self.append(last, over_bound=True)


class RedisLog(EventLog):
    def __init__(self, url: str, *, prefix: str, keep_seconds: float, max_bytes: int,
                 abandon_seconds: float, max_connections: int = 256) -> None:
        self.local = MemoryLog(keep_seconds=keep_seconds, max_bytes=max_bytes)
        self.prefix = prefix
        self.keep_ms = int(keep_seconds * 1000)
        self.live_ms = int((keep_seconds + LIVE_BOUND_SECONDS) * 1000)
        # a watcher's mark outlives the time between its refreshes (WATCH_EVERY_SECONDS)
        self.abandon_ms = max(3000, int(abandon_seconds * 1000))
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self.writes = redis.asyncio.Redis.from_url(
            url, socket_connect_timeout=WRITE_TIMEOUT_SECONDS, socket_timeout=WRITE_TIMEOUT_SECONDS,
            retry=retry)
        # Blocking reads hold a connection each; bounded by the asyncio.timeout around them.
        self.reads = redis.asyncio.Redis.from_pool(redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=WRITE_TIMEOUT_SECONDS,
            socket_connect_timeout=WRITE_TIMEOUT_SECONDS))
        #: (stream id, seq, event) to mirror; seq 0: the stream's meta (event = the tenant)
        self.pending: list[tuple[str, int, bytes]] = []
        self.wake = asyncio.Event()
        self.broken: dict[str, bool] = {}  # stream id -> its `1-0` marker is written
        self.errors = 0  # failed round trips (for tests and logs)
        #: streams of this process another process asked to cancel (DELETE there)
        self.cancels: asyncio.Queue[str] = asyncio.Queue()
        #: new streams whose meta is not in Redis yet -> resolved once its round trip is over
        self.publishing: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def generating(self) -> int:
        return self.local.generating

    @property
    def kept(self) -> int:
        return self.local.kept

    def key(self, stream_id: str) -> str:
        return self.prefix + stream_id

    def create(self, stream_id: str, tenant: str) -> Writer:
        local = self.local.create(stream_id, tenant)
        self.publishing[stream_id] = asyncio.get_running_loop().create_future()
        self.pending.append((stream_id, 0, tenant.encode()))
        self.kick()
        return _Mirrored(self, local)

    def kick(self) -> None:
        """Something is pending: the mirror task sends it (started on first use)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._mirror())
        self.wake.set()

    async def info(self, stream_id: str) -> StreamInfo | None:
        here = await self.local.info(stream_id)
        if here is not None:
            return here
        key = self.key(stream_id)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS + READ_MARGIN_SECONDS):
                async with self.reads.pipeline(transaction=False) as pipe:
                    pipe.hget(key + ":m", "t")
                    pipe.pttl(key + ":m")
                    tenant, ttl = await pipe.execute()
        except (redis.RedisError, OSError, TimeoutError) as exc:
            raise Unavailable(f"the stream log is unavailable ({type(exc).__name__})") from None
        if tenant is None:
            return None
        return StreamInfo(tenant.decode(), time.time() + max(0, ttl) / 1000, local=False)

    async def published(self, stream_id: str) -> None:
        """The 201 of a new stream waits for its meta's round trip (once per stream, never per
        event), so a subscriber that goes straight to another replica finds it."""
        waiting = self.publishing.get(stream_id)
        if waiting is not None:
            try:
                await asyncio.wait_for(asyncio.shield(waiting), WRITE_TIMEOUT_SECONDS * 2)
            except TimeoutError:
                pass

    def reader(self, stream_id: str) -> Reader:
        local = self.local.reader(stream_id)
        return local if local is not None else RemoteReader(self, stream_id)

    async def cancel_elsewhere(self, stream_id: str, wait: float) -> bool:
        """Leave `{id}:c` for the generating process (its mirror sees it with its next events'
        round trip), then wait (bounded) for the stream's last event."""
        key = self.key(stream_id)
        try:
            async with asyncio.timeout(wait):
                await self.writes.set(key + ":c", b"1", px=self.keep_ms)
                while True:
                    last = entries(await self.writes.xrevrange(key, count=1))
                    if not last or last[0][0] == BROKEN_ID or (last[0][1] and is_terminal(last[0][1][-1])):
                        return True
                    await asyncio.sleep(CANCEL_POLL_SECONDS)
        except (redis.RedisError, OSError, TimeoutError):
            return False

    async def cancelled(self) -> str:
        return await self.cancels.get()

    async def watched(self, stream_id: str) -> bool:
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                return bool(await self.writes.exists(self.key(stream_id) + ":w"))
        except (redis.RedisError, OSError, TimeoutError):
            return False  # nobody can read it from Redis now either

    def watching(self, stream_id: str) -> None:
        self.pending.append((stream_id, -1, b""))
        self.kick()

    # -- the mirror ------------------------------------------------------------------------

    async def _mirror(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            await self._flush(batch)
            await self._mark_broken()

    async def _flush(self, batch: list[tuple[str, int, bytes]]) -> None:
        pipe = self.writes.pipeline(transaction=False)
        touched: dict[str, bool] = {}  # stream id -> ended
        run: list[bytes] = []  # consecutive events of one stream: ONE entry, id `0-<last seq>`
        run_id, run_seq = "", 0
        for stream_id, seq, event in batch:
            if run and (stream_id != run_id or seq <= 0):
                pipe.xadd(self.key(run_id), {"e": b"".join(run)}, id=f"0-{run_seq}")
                run = []
            key = self.key(stream_id)
            if seq == -1:
                pipe.set(key + ":w", b"1", px=self.abandon_ms)
                continue
            if stream_id in self.broken:
                continue
            if seq == 0:
                pipe.hset(key + ":m", "t", event)
            else:
                run.append(event)
                run_id, run_seq = stream_id, seq
            touched[stream_id] = touched.get(stream_id, False) or (seq > 0 and is_terminal(event))
        if run:
            pipe.xadd(self.key(run_id), {"e": b"".join(run)}, id=f"0-{run_seq}")
        asked: list[tuple[int, str]] = []  # (reply index, stream id): a cancel asked elsewhere?
        for stream_id, ended in touched.items():
            key, ms = self.key(stream_id), self.keep_ms if ended else self.live_ms
            pipe.pexpire(key, ms)
            pipe.pexpire(key + ":m", ms)
            if not ended:
                asked.append((len(pipe), stream_id))
                pipe.exists(key + ":c")
        try:
            if not len(pipe):
                return
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS * 2):
                replies = await pipe.execute()
            for at, stream_id in asked:
                if replies[at]:
                    self.cancels.put_nowait(stream_id)
        except (redis.RedisError, OSError, TimeoutError):
            self.errors += 1
            for stream_id in touched:  # what they hold may have a gap now: mirror no more
                self.broken.setdefault(stream_id, False)
            if self.broken:
                await asyncio.sleep(WRITE_TIMEOUT_SECONDS / 4)
                self.wake.set()  # try the markers again
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]
            for stream_id, seq, _ in batch:  # published, or failed trying: the 201 goes out
                if seq == 0 and (waiting := self.publishing.pop(stream_id, None)) is not None:
                    waiting.set_result(None)

    async def _mark_broken(self) -> None:
        """Each broken stream's `1-0` entry, once Redis answers again."""
        todo = [stream_id for stream_id, marked in self.broken.items() if not marked]
        if not todo:
            return
        pipe = self.writes.pipeline(transaction=False)
        for stream_id in todo:
            key = self.key(stream_id)
            pipe.xadd(key, {"e": b""}, id=BROKEN_ID)
            pipe.pexpire(key, self.keep_ms)
            pipe.pexpire(key + ":m", self.keep_ms)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS * 2):
                await pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError, TimeoutError):
            self.errors += 1
            await asyncio.sleep(WRITE_TIMEOUT_SECONDS / 4)
            self.wake.set()
            return
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]
        for stream_id in todo:
            self.broken[stream_id] = True

    async def close(self) -> None:
        if self.pending and self._task is not None:  # what is pending, bounded
            batch, self.pending = self.pending, []
            try:
                await asyncio.wait_for(self._flush(batch), WRITE_TIMEOUT_SECONDS * 2)
            except TimeoutError:
                pass
        if self._task is not None:  # every step bounded: a stalled Redis never holds a shutdown
            self._task.cancel()
            await asyncio.wait([self._task], timeout=WRITE_TIMEOUT_SECONDS * 2)
            self._task = None
        await self.local.close()
        for client in (self.writes, self.reads):
            try:
                await asyncio.wait_for(client.aclose(), WRITE_TIMEOUT_SECONDS * 2)
            except (TimeoutError, redis.RedisError, OSError):
                pass
