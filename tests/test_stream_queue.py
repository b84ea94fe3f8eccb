"""SlotQueue: priority then FIFO, shedding, and no slot leaked under cancellation.

Tasks are synchronised with futures and single loop turns (`asyncio.sleep(0)` lets every
ready task run one step), never with timed sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gateway.admission.queue import SlotQueue
from gateway.errors import Shed


@asynccontextmanager
async def slot(q: SlotQueue, priority: int) -> AsyncIterator[float]:
    """`acquire`, and always `release`: what admission does around an upstream call."""
    waited = await q.acquire(priority)
    try:
        yield waited
    finally:
        q.release()


async def turn() -> None:
    """Let every task that is ready run until its next await."""
    await asyncio.sleep(0)


async def test_free_slot_is_taken_without_suspending() -> None:
    q = SlotQueue(max_active=1, max_queue=1, timeout=10)
    coro = q.acquire(0)
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # ran to the end in one step: it never awaited
    assert done.value.value == 0.0
    assert q.active == 1


async def test_higher_priority_first_then_fifo() -> None:
    q = SlotQueue(max_active=1, max_queue=10, timeout=10)
    await q.acquire(0)
    order: list[str] = []

    async def waiter(name: str, priority: int) -> None:
        async with slot(q, priority):
            order.append(name)

    tasks = [asyncio.create_task(waiter(n, p))
             for n, p in [("1a", 1), ("5a", 5), ("1b", 1), ("5b", 5), ("3", 3), ("1c", 1)]]
    await turn()
    assert q.depth == 6
    assert q.active == 1
    q.release()
    await asyncio.gather(*tasks)
    assert order == ["5a", "5b", "3", "1a", "1b", "1c"]
    assert (q.active, q.depth) == (0, 0)


async def test_release_hands_the_slot_over_so_newcomers_cannot_jump_the_queue() -> None:
    q = SlotQueue(max_active=1, max_queue=10, timeout=10)
    await q.acquire(0)
    waiter = asyncio.create_task(q.acquire(0))
    await turn()
    q.release()
    assert (q.active, q.depth) == (1, 0)  # the slot is the waiter's already
    newcomer = asyncio.create_task(q.acquire(100))
    await turn()
    assert waiter.done() and not newcomer.done()
    q.release()
    await newcomer
    q.release()
    assert q.active == 0


async def test_full_queue_sheds_at_once() -> None:
    q = SlotQueue(max_active=1, max_queue=2, timeout=10)
    await q.acquire(0)
    waiters = [asyncio.create_task(q.acquire(0)) for _ in range(2)]
    await turn()
    with pytest.raises(Shed) as info:
        await q.acquire(0)  # equal priority: no one to displace
    assert info.value.reason == "queue_full"
    assert info.value.status == 503
    assert info.value.retry_after > 0
    assert q.depth == 2
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert (q.active, q.depth) == (1, 0)


async def test_full_queue_higher_priority_displaces_the_lowest_newest_waiter() -> None:
    q = SlotQueue(max_active=1, max_queue=3, timeout=10)
    await q.acquire(0)
    old_low = asyncio.create_task(q.acquire(1))
    await turn()
    new_low = asyncio.create_task(q.acquire(1))
    mid = asyncio.create_task(q.acquire(5))
    await turn()
    with pytest.raises(Shed):
        await q.acquire(1)  # equal to the lowest waiter: the arrival is shed
    high = asyncio.create_task(q.acquire(9))
    await turn()
    with pytest.raises(Shed) as info:
        await new_low
    assert info.value.reason == "queue_full"
    assert not old_low.done() and q.depth == 3
    order: list[str] = []
    for name, task in (("high", high), ("mid", mid), ("old_low", old_low)):
        q.release()
        await task
        order.append(name)
    assert order == ["high", "mid", "old_low"]
    q.release()
    assert (q.active, q.depth) == (0, 0)


async def test_displaced_waiter_is_shed_and_its_place_leaks_nothing() -> None:
    q = SlotQueue(max_active=1, max_queue=1, timeout=10)
    await q.acquire(0)
    low = asyncio.create_task(q.acquire(0))
    await turn()
    high = asyncio.create_task(q.acquire(5))
    with pytest.raises(Shed):
        await low
    q.release()
    await high
    q.release()
    assert (q.active, q.depth) == (0, 0)


async def test_wait_over_timeout_sheds() -> None:
    q = SlotQueue(max_active=1, max_queue=2, timeout=0.05)
    await q.acquire(0)
    with pytest.raises(Shed) as info:
        await q.acquire(0)
    assert info.value.reason == "queue_timeout"
    assert info.value.retry_after > 0
    assert (q.active, q.depth) == (1, 0)
    q.release()
    assert q.active == 0


async def test_cancelled_waiter_leaves_at_once_and_takes_no_slot() -> None:
    q = SlotQueue(max_active=1, max_queue=5, timeout=10)
    await q.acquire(0)
    waiter = asyncio.create_task(q.acquire(0))
    await turn()
    assert q.depth == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert q.depth == 0
    q.release()
    assert q.active == 0


async def test_cancelled_in_the_turn_it_got_the_slot_passes_it_on() -> None:
    q = SlotQueue(max_active=1, max_queue=5, timeout=10)
    await q.acquire(0)
    first = asyncio.create_task(q.acquire(1))
    second = asyncio.create_task(q.acquire(0))
    await turn()
    q.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second >= 0
    assert (q.active, q.depth) == (1, 0)
    q.release()
    assert q.active == 0


async def test_slot_freed_while_a_cancelled_waiter_is_still_counted_is_not_lost() -> None:
    q = SlotQueue(max_active=1, max_queue=5, timeout=10)
    await q.acquire(0)
    cancelled = asyncio.create_task(q.acquire(0))
    await turn()
    cancelled.cancel()  # its future is cancelled now, its cleanup runs on its next step
    q.release()  # nobody live to hand to: the slot goes back
    assert q.active == 0
    assert await asyncio.wait_for(q.acquire(0), timeout=5) >= 0  # must not queue behind a ghost
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (q.active, q.depth) == (1, 0)


async def test_slot_is_released_on_exception() -> None:
    q = SlotQueue(max_active=1, max_queue=0, timeout=10)
    with pytest.raises(RuntimeError):
        async with slot(q, 0) as waited:
            assert waited == 0.0
            raise RuntimeError("stream failed")
    assert q.active == 0
    with pytest.raises(RuntimeError):
        q.release()  # more releases than acquires is a bug, said loudly


async def test_hammer_success_exception_cancellation_and_shedding() -> None:
    rnd = random.Random(1234)
    q = SlotQueue(max_active=4, max_queue=12, timeout=10)
    outcomes = {"ok": 0, "error": 0, "shed": 0, "cancelled": 0}
    peak = 0

    async def client(i: int) -> None:
        nonlocal peak
        try:
            async with slot(q, rnd.randrange(4)):
                peak = max(peak, q.active)
                for _ in range(rnd.randrange(6)):
                    await turn()
                if i % 7 == 0:
                    raise ValueError("upstream broke")
            outcomes["ok"] += 1
        except Shed:
            outcomes["shed"] += 1
        except ValueError:
            outcomes["error"] += 1
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
            raise

    tasks: list[asyncio.Task[None]] = []
    for i in range(600):
        tasks.append(asyncio.create_task(client(i)))
        if rnd.random() < 0.5:
            await turn()
        if rnd.random() < 0.3:  # a client goes away: queued, streaming or not started yet
            victim = rnd.choice(tasks)
            victim.cancel()
        assert q.active <= 4
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    assert (q.active, q.depth) == (0, 0)
    assert peak == 4
    assert all(outcomes[k] > 0 for k in outcomes), outcomes
