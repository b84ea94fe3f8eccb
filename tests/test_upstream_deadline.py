"""`Deadline`: an attempt's timeout, as `asyncio.timeout_at` behaves, on one lazily re-armed timer."""

from __future__ import annotations

import asyncio

import pytest

from gateway.upstream.deadline import Deadline


async def test_a_deadline_that_passes_is_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        with Deadline(loop, loop.time() + 0.01):
            await asyncio.sleep(5)


async def test_an_extended_deadline_lets_the_wait_go_on_until_the_new_one() -> None:
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    loop.call_later(0.05, event.set)  # after the first deadline, before the extended one
    with Deadline(loop, loop.time() + 0.01) as bound:
        bound.extend(loop.time() + 5)
        await event.wait()
    with pytest.raises(TimeoutError):
        with Deadline(loop, loop.time() + 0.01) as bound:
            bound.extend(loop.time() + 0.03)
            await asyncio.sleep(5)


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def waiting() -> None:
        with Deadline(loop, loop.time() + 5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.ensure_future(waiting())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_deadline_that_did_not_pass_leaves_the_task_uncancelled() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 5):
        await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
