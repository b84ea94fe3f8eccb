"""A stream generated in another process, read from Redis (`redis.py` writes it): the
replay, then `XREAD BLOCK` for the live tail, and the entries' format.

An entry `0-<n>` holds the events up to sequence number n since the entry before (their bytes
joined, each with its blank line); `1-0` (after every `0-<n>`) marks a stream whose mirror
broke mid-stream. Meeting it, a gap, a Redis that does not answer within the wait plus
READ_MARGIN_SECONDS, or a stream whose keys are gone: `Unavailable`. Never a hang.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import redis.asyncio

from .log import Batch, Reader, Unavailable, is_terminal

BROKEN_ID = b"1-0"
#: how much longer than its block a remote read may take before Redis counts as not answering
READ_MARGIN_SECONDS = 2.0
#: a remote subscriber says it is there at most this often
WATCH_EVERY_SECONDS = 1.0
READ_COUNT = 512


class TailSource(Protocol):
    """What a remote reader needs of the Redis log (`redis.RedisLog`): its blocking-read
    client, a stream's key, and where to say that a subscriber is watching."""

    reads: redis.asyncio.Redis

    def key(self, stream_id: str) -> str: ...

    def watching(self, stream_id: str) -> None: ...


class RemoteReader(Reader):
    """A stream generated in another process, read from Redis (XREAD BLOCK for the tail)."""

    __slots__ = ("_log", "_id", "_key", "_told", "_looked", "_end")

    def __init__(self, log: TailSource, stream_id: str) -> None:
        self._log = log
        self._id = stream_id
        self._key = log.key(stream_id)
        self._told = 0.0
        self._looked = False  # at the stream's last entry, once (has it ended already?)
        self._end: int | None = None  # the seq of its `done` or `error`, once seen

    async def read(self, after: int, wait: float) -> Batch:
        if self._end is not None and after >= self._end:
            return Batch(after + 1, [], True)
        now = time.perf_counter()
        if now >= self._told + WATCH_EVERY_SECONDS:
            self._told = now
            self._log.watching(self._id)
        block = max(1, int(wait * 1000))
        try:
            async with asyncio.timeout(wait + READ_MARGIN_SECONDS):
                if not self._looked:
                    self._looked = True
                    last = entries(await self._log.reads.xrevrange(self._key, count=1))
                    if last and last[0][0] == BROKEN_ID:
                        raise Unavailable("the stream's log in Redis is incomplete (Redis failed mid-stream)")
                    if last and last[0][1] and is_terminal(last[0][1][-1]):
                        self._end = seq_of(last[0][0])
                        if self._end <= after:
                            return Batch(after + 1, [], True)
                found: Any = await self._log.reads.xread({self._key: f"0-{after}"}, count=READ_COUNT,
                                                         block=block)
                if not found:  # a heartbeat's time; is the stream still there?
                    if not await self._log.reads.exists(self._key + ":m"):
                        raise Unavailable("the stream expired or its log was lost")
                    return Batch(after + 1, [], False)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            raise Unavailable(f"the stream log is unavailable ({type(exc).__name__})") from None
        events: list[bytes] = []
        for entry_id, entry in entries(found[0][1]):
            if entry_id == BROKEN_ID:
                raise Unavailable("the stream's log in Redis is incomplete (Redis failed mid-stream)")
            top = seq_of(entry_id)  # the entry holds events top-len+1 .. top
            if top - len(entry) + 1 > after + 1 + len(events):
                raise Unavailable("the stream's log in Redis has a gap")
            events.extend(entry[len(entry) - (top - after - len(events)):])
        ended = bool(events) and is_terminal(events[-1])
        if ended:
            self._end = after + len(events)
        return Batch(after + 1, events, ended)


def entries(raw: Any) -> list[tuple[bytes, list[bytes]]]:
    """XRANGE / XREAD entries as (entry id, its events: one or more, each with its blank line)."""
    return [(bytes(entry_id), split(bytes(fields.get(b"e", b"")))) for entry_id, fields in raw]


def split(data: bytes) -> list[bytes]:
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def seq_of(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[2])
