"""The event log of a resumable stream: what a generation appends and subscribers read.

Rules:
- An event is one whole simple event as SSE bytes (`event: message\ndata: {...}\n\n`), with
  no `id:` line: a subscriber adds its own (`id: 7`, or `id: <stream id>.7` for the GET form),
  so the stored bytes are written as they are. Sequence numbers start at 1, one per event.
- `append` never waits (no I/O on the relay's path): it returns the event's sequence number at
  once, and every subscriber waiting for more is woken. A Redis mirror flushes in the background.
- A `done` or `error` event is the stream's last: after it the stream has ended, and is kept
  `keep_seconds` for late or returning subscribers, then expires (unknown from then on).
- Past `max_bytes` of events an append raises `LogFull`; the generation then ends the stream
  with its one error event (which is let in, over the bound).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..errors import GatewayError

DONE_EVENT = b"event: done\n"
ERROR_EVENT = b"event: error\n"


def is_terminal(event: bytes) -> bool:
    """A `done` or `error` event: nothing follows it."""
    return event.startswith(DONE_EVENT) or event.startswith(ERROR_EVENT)


def split_events(data: bytes) -> list[bytes]:
    """A relay write (simple events, maybe several, maybe a `: ping`) as whole events, each
    with its blank line; comments are dropped (subscribers send their own heartbeats)."""
    out = []
    for part in data.split(b"\n\n"):
        if part and not part.startswith(b":"):
            out.append(part + b"\n\n")
    return out


class LogFull(GatewayError):
    """The stream's events reached `[streams] max_bytes`."""

    status = 507
    code = "stream_too_large"
    outcome = "stream_too_large"


class Unavailable(Exception):
    """The log can't be read here any more (its Redis failed, or lost part of it)."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    tenant: str  # who created it (DELETE and the GET form's resume must be that tenant)
    expires_at: float  # unix time after which it is gone, if it has ended by then
    local: bool  # its generation runs in this process


@dataclass(frozen=True, slots=True)
class Batch:
    """Events after a subscriber's last: `events[i]` has sequence number `first + i`."""

    first: int
    events: list[bytes]
    ended: bool  # the last event (at or before these) was `done` or `error`


class Writer(ABC):
    """The generation's end of one stream."""

    @abstractmethod
    def append(self, event: bytes, *, over_bound: bool = False) -> int:
        """Add one whole event; its sequence number. `over_bound`: let it in past `max_bytes`
        (the one error event that ends a full stream)."""

    @abstractmethod
    def end(self, last: bytes) -> None:
        """The generation is over: `last` (an error event) is appended unless the stream
        already ended with `done` or `error`; expiry starts."""


class Reader(ABC):
    """A subscriber's view of one stream."""

    @abstractmethod
    async def read(self, after: int, wait: float) -> Batch:
        """The events after sequence number `after`; when there are none yet and the stream
        goes on, waits up to `wait` seconds for more (then an empty batch: time for a
        heartbeat). Raises `Unavailable` when the log can't be read any more."""


class EventLog(ABC):
    """Where the streams' events are kept (memory, or Redis Streams)."""

    @abstractmethod
    def create(self, stream_id: str, tenant: str) -> Writer: ...

    @abstractmethod
    async def info(self, stream_id: str) -> StreamInfo | None:
        """None when unknown or expired."""

    @abstractmethod
    def reader(self, stream_id: str) -> Reader | None:
        """None when unknown here (see `info`)."""

    async def published(self, stream_id: str) -> None:  # noqa: B027
        """Wait (bounded) until other processes can find the new stream (memory: at once)."""

    async def cancel_elsewhere(self, stream_id: str, wait: float) -> bool:
        """Ask the process that generates it to cancel it; True once it ended within `wait`
        seconds. (Memory: every stream is this process's, never elsewhere.)"""
        return False

    async def cancelled(self) -> str:
        """The next stream of this process that another process asked to cancel."""
        await asyncio.Event().wait()  # memory: never
        raise AssertionError("unreachable")

    async def watched(self, stream_id: str) -> bool:
        """Does a subscriber in another process watch it now? (never, in memory)"""
        return False

    def watching(self, stream_id: str) -> None:  # noqa: B027 (a no-op by default)
        """A subscriber in this process that reads it from elsewhere says it is there."""

    async def close(self) -> None:  # noqa: B027
        """Flush what is pending and let go of connections."""
