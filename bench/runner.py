"""One side-by-side run: its deadline, its processes, the load-generator subprocess it asks,
the in-process mock, and the results every row writes into (`results[row name]`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson

from bench.config import REPO
from bench.proc_stats import cpu_seconds
from bench.procs import Procs
from gateway.mock import MockState


class Run:
    def __init__(self, quick: bool, workdir: Path, mock_url: str, mock_state: MockState) -> None:
        self.quick = quick
        self.deadline = time.monotonic() + (57 if quick else 570)
        self.procs = Procs(workdir)
        self.workdir = workdir
        self.mock_url = mock_url
        self.mock_state = mock_state  # the mock runs in this process: rows read its records
        self.results: dict[str, Any] = {"quick": quick}
        self.urls: dict[str, str] = {}  # target name -> base URL, for the rows run on every target
        self.pids: dict[str, int] = {}  # process name -> PID, whose CPU those rows measure
        self.client: asyncio.subprocess.Process | None = None

    async def start_client(self) -> None:
        self.client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.client", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})

    async def stop_client(self) -> None:
        client = self.client
        if client is None or client.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert client.stdin is not None
            client.stdin.write(b'{"op": "quit"}\n')
            await asyncio.wait_for(client.wait(), 5)
        if client.returncode is None:
            client.kill()
            await client.wait()

    async def phase(self, name: str, work: Awaitable[None]) -> None:
        started = time.monotonic()
        await work
        self.results.setdefault("phase_seconds", {})[name] = round(time.monotonic() - started, 1)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    async def ask(self, op: str, wait_s: float = 180, **args: Any) -> dict[str, Any]:
        """One command to the load generator; its answer (bounded by the run's deadline)."""
        assert self.client is not None and self.client.stdin and self.client.stdout
        self.client.stdin.write(orjson.dumps({"op": op, **args}) + b"\n")
        await self.client.stdin.drain()
        wait = min(wait_s, max(1.0, self.left()))
        line = await asyncio.wait_for(self.client.stdout.readline(), wait)
        if not line:
            raise RuntimeError("the load generator exited")
        result: dict[str, Any] = orjson.loads(line)
        return result

    async def measured(self, pids: dict[str, int], op: str, **args: Any
                       ) -> tuple[dict[str, Any], dict[str, float]]:
        """Run one client command; CPU seconds each process spent meanwhile."""
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        result = await self.ask(op, **args)
        return result, {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}

    async def warm_up(self, url: str) -> None:
        """Connections, imports, caches: a short run before anything is measured."""
        await self.ask("bench", url=url, model="mock-1", concurrency=10, requests=50)
