"""Early commit: the 200 SSE headers and `: ping` heartbeats for a stream whose client has
waited a heartbeat interval while the attempt policy still tries targets.

Rules:
- Nothing is sent before `at` (a stream whose first byte comes sooner behaves as if this
  did not exist); from then, one `: ping` every `interval` until `stop()`.
- Only whole heartbeats are written, so the relay that follows starts at an event boundary.
- `stop()` lets a write in progress finish rather than cancelling it halfway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from .loop import HEARTBEAT


class EarlyCommit:
    def __init__(self, request: web.Request, headers: dict[str, str], interval: float,
                 on_heartbeat: Callable[[], None]) -> None:
        self._request = request
        self._headers = headers
        self._interval = interval
        self._on_heartbeat = on_heartbeat
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: the prepared response once the headers went out (then the answer must be a stream)
        self.response: web.StreamResponse | None = None
        #: a heartbeat's write failed: the client went away
        self.gone: OSError | None = None

    def start(self, at: float) -> None:
        """Send the headers and the first heartbeat at loop time `at`, unless stopped first."""
        self._task = asyncio.get_running_loop().create_task(self._run(at))

    async def stop(self) -> None:
        """No heartbeat after this returns; a started write is let finish."""
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _run(self, at: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(at):
                        await self._stopped.wait()
                    return
                except TimeoutError:
                    pass
                if self._stopped.is_set():  # stopped as the timer fired: no heartbeat
                    return
                if self.response is None:
                    response = web.StreamResponse(headers=self._headers)
                    await response.prepare(self._request)
                    self.response = response
                await self.response.write(HEARTBEAT)
                self._on_heartbeat()
                at = max(at + self._interval, loop.time())
        except OSError as exc:  # ConnectionResetError and aiohttp's subclasses of it
            self.gone = exc
