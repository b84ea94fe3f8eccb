"""The global limit on concurrent upstream calls: a priority queue of waiters, and shedding.

Every API request that calls an upstream takes a slot, stream or not, so slow non-stream
requests cannot starve streams; `gateway_active_streams` counts these slots (upstream calls).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from ..errors import Shed

#: What a shed client is told to wait before retrying: long enough not to hammer a saturated
#: gateway, short enough that a slot freed meanwhile is not wasted.
SHED_RETRY_AFTER = 1.0


def _queue_full() -> Shed:
    return Shed("too many requests waiting; try again shortly",
                reason="queue_full", retry_after=SHED_RETRY_AFTER)


class SlotQueue:
    """At most `max_active` upstream calls (streams or not) at once; up to `max_queue` more
    wait for a slot.

    Rules:
    - a free slot with nobody waiting is taken at once, without awaiting;
    - otherwise the request waits: higher `priority` first, FIFO within a priority;
    - a full queue sheds the newcomer (`queue_full`), unless the newcomer's priority is higher
      than the lowest waiting one: then the lowest-priority waiter (the newest among equals)
      is displaced and shed instead, so a burst of low-priority work cannot lock out
      high-priority arrivals; a wait over `timeout` sheds the waiter (`queue_timeout`); all
      are 503 with Retry-After;
    - `release` hands the slot straight to the best waiter (`active` does not dip), so a
      newcomer can never jump the queue between a release and the waiter waking up;
    - a waiter cancelled (client gone) leaves the queue at once; if a slot was handed to it
      in the same loop turn, it passes the slot on, so no slot is ever leaked.

    Waiters leave the heap lazily: `depth` counts the live ones, the heap is compacted when
    dead entries outnumber them.
    """

    def __init__(self, max_active: int, max_queue: int, timeout: float) -> None:
        if max_active < 1 or max_queue < 0 or timeout <= 0:
            raise ValueError("need max_active >= 1, max_queue >= 0, timeout > 0")
        self._max_active = max_active
        self._max_queue = max_queue
        self._timeout = timeout
        self._active = 0
        self._waiting = 0
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def active(self) -> int:
        """Slots held now."""
        return self._active

    @property
    def depth(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    async def acquire(self, priority: int) -> float:
        """Take a slot; returns the seconds waited for it. Raises Shed."""
        if self._active < self._max_active and not self._waiting:
            self._active += 1
            return 0.0
        if self._waiting >= self._max_queue and not self._displace(priority):
            raise _queue_full()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (-priority, next(self._seq), fut))
        self._waiting += 1
        self._dispatch()  # a slot may be free while a cancelled waiter is still counted
        try:
            async with asyncio.timeout(self._timeout):
                await fut
        except (asyncio.CancelledError, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                # displaced in this very turn: it has already left the queue
                if timed_out:
                    raise _queue_full() from None
                raise
            if fut.done() and not fut.cancelled():  # a slot was handed over in this very turn
                if timed_out:
                    return time.perf_counter() - started  # it came as the deadline hit: keep it
                self.release()  # the client is gone: pass the slot on
                raise
            fut.cancel()  # still queued: leave now; _dispatch() skips it from here on
            self._waiting -= 1
            self._compact()
            self._dispatch()
            if timed_out:
                raise Shed(f"no stream slot within {self._timeout:g}s; try again shortly",
                           reason="queue_timeout", retry_after=SHED_RETRY_AFTER) from None
            raise
        return time.perf_counter() - started

    def release(self) -> None:
        """Give a slot back: to the best live waiter if there is one, else to the pool."""
        if self._active <= 0:
            raise RuntimeError("SlotQueue.release() without a matching acquire()")
        self._active -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        # Hand free slots to the best live waiters; the slot is counted as theirs at once.
        while self._active < self._max_active and self._heap:
            fut = heapq.heappop(self._heap)[2]
            if not fut.done():
                fut.set_result(None)
                self._waiting -= 1
                self._active += 1

    def _displace(self, priority: int) -> bool:
        # The queue is full: shed the lowest-priority live waiter (the newest among equals) if
        # the arrival outranks it. Its future gets the Shed; the arrival takes its place.
        live = [entry for entry in self._heap if not entry[2].done()]
        if not live:
            return False
        victim = max(live, key=lambda entry: (entry[0], entry[1]))
        if -victim[0] >= priority:
            return False
        victim[2].set_exception(_queue_full())
        self._waiting -= 1
        self._compact()
        return True

    def _compact(self) -> None:
        # Cancelled and timed-out waiters stay in the heap until popped; drop them when they
        # outnumber the live ones, so a long stall with many timeouts cannot grow the heap.
        if len(self._heap) > 2 * self._waiting + 16:
            self._heap = [entry for entry in self._heap if not entry[2].done()]
            heapq.heapify(self._heap)
