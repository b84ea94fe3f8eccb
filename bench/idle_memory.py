"""What one idle stream costs in memory, and who holds it: the gateway runs in THIS process
under tracemalloc; the mock upstream and the client that holds N idle streams are
subprocesses (their allocations are not counted). Heartbeats on by default.

    python bench/idle_memory.py [--streams 1000] [--heartbeat 2] [--no-trace] [--floor] [--frames N]

Prints the traced bytes per stream, grouped by allocating file and by line, and the RSS
growth per stream (with `--no-trace`, RSS without tracemalloc's own overhead). `--frames N`
(N > 1) keeps N frames per allocation and also charges each one to the innermost frame of
the gateway (or of the floor) that led to it: what aiohttp, asyncio or uvloop allocate on our
behalf (a timer handle, a task, a coroutine's frame) is shown at our line that asked for it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root is not on the path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.client import IDLE_MODEL, chat_body, headers  # noqa: E402
from bench.config import UPSTREAM_KEY, UPSTREAM_KEY_ENV, gateway_config  # noqa: E402
from bench.proc_stats import rss_bytes  # noqa: E402
from bench.procs import free_port, wait_ok  # noqa: E402


async def hold(url: str, n: int) -> None:
    """The client subprocess: open `n` idle streams, say "open N" once all are open, hold
    them until stdin closes."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                    timeout=aiohttp.ClientTimeout(total=None))
    body = orjson.dumps(chat_body(IDLE_MODEL))
    gate = asyncio.Semaphore(100)
    opened = asyncio.Event()
    count = 0

    async def one() -> None:
        nonlocal count
        async with gate:
            resp = await session.post(f"{url}/v1/chat/completions", data=body, headers=headers())
            await resp.content.readany()
        count += 1
        if count == n:
            opened.set()
        async for _ in resp.content.iter_any():
            pass

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.wait_for(opened.wait(), 120)
    print(f"open {count}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await session.close()


async def measure(streams: int, heartbeat: float, trace: bool, floor: bool = False,
                  frames: int = 1) -> None:
    from bench.floor import build_app as floor_app
    from gateway.app import build_app
    from gateway.config import config_from_dict
    from gateway.logs import make_logger

    mock_port, port = free_port(), free_port()
    mock = subprocess.Popen([sys.executable, "-m", "gateway", "mock-upstream", "--port", str(mock_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client: subprocess.Popen[bytes] | None = None
    runner: web.AppRunner | None = None
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed after the app is cleaned up
    try:
        await wait_ok(f"http://127.0.0.1:{mock_port}/v1/models", mock)
        raw = gateway_config(port, f"http://127.0.0.1:{mock_port}", heartbeat=heartbeat)
        config = config_from_dict(raw, {UPSTREAM_KEY_ENV: UPSTREAM_KEY}, source="<idle_memory>")
        # As `serve` runs it (handler cancellation on); `--floor`: the bare aiohttp proxy
        # (bench/floor.py) instead, to compare who holds what, line by line.
        app = (floor_app(f"http://127.0.0.1:{mock_port}", None) if floor
               else build_app(config, make_logger(sink)))
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        # Warm up: one-time allocations (imports, caches, the first connections) before.
        warm = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "bench", "--url", f"{url}/v1", "--key",
            headers()["Authorization"].split()[1], "--concurrency", "20", "--requests", "200",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await warm.wait()
        gc.collect()
        if trace:
            tracemalloc.start(frames)
        before_rss = rss_bytes(os.getpid())
        before = tracemalloc.take_snapshot() if trace else None
        client = subprocess.Popen([sys.executable, __file__, "--hold", url, "--streams", str(streams)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert client.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, client.stdout.readline)
        print(f"client: {line.decode().strip()}")
        await asyncio.sleep(max(heartbeat, 0.5) * 1.5 + 0.5)  # every stream past a heartbeat
        gc.collect()
        after_rss = rss_bytes(os.getpid())
        print(f"RSS growth per idle stream: {(after_rss - before_rss) / streams / 1024:.1f} KiB"
              f" ({'with' if trace else 'without'} tracemalloc)")
        if before is not None:
            after = tracemalloc.take_snapshot()
            report(after, before, streams)
            if frames > 1:
                report_ours(after, before, streams)
    finally:
        if client is not None:
            client.communicate(timeout=30)
        if runner is not None:
            await runner.cleanup()
        sink.close()
        mock.terminate()
        mock.wait(10)


def report(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, streams: int) -> None:
    files = after.compare_to(before, "filename")
    total = sum(d.size_diff for d in files)
    print(f"traced growth per idle stream: {total / streams / 1024:.1f} KiB")
    print("by file (bytes per stream):")
    for d in files[:12]:
        print(f"  {d.size_diff / streams:8.0f}  {_short(d.traceback[0].filename)}")
    print("by line (bytes per stream, allocations per stream):")
    for d in after.compare_to(before, "lineno")[:25]:
        frame = d.traceback[0]
        print(f"  {d.size_diff / streams:8.0f} {d.count_diff / streams:5.1f}  "
              f"{_short(frame.filename)}:{frame.lineno}")


def report_ours(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, streams: int) -> None:
    """Each allocation charged to the innermost frame of ours (the gateway's or the floor's) on
    its traceback; one with none (the server's and the client's own) to `(aiohttp)`."""
    ours: dict[str, list[int]] = {}
    for d in after.compare_to(before, "traceback"):
        where = "(aiohttp)"
        for frame in reversed(d.traceback):  # innermost first
            if "/gateway/" in frame.filename or frame.filename.endswith("bench/floor.py"):
                where = f"{_short(frame.filename)}:{frame.lineno}"
                break
        kept = ours.setdefault(where, [0, 0])
        kept[0] += d.size_diff
        kept[1] += d.count_diff
    print("by our line (bytes per stream, allocations per stream):")
    for where, (size, count) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:30]:
        print(f"  {size / streams:8.0f} {count / streams:5.1f}  {where}")


def _short(path: str) -> str:
    return path.split("site-packages/")[-1].split("/gateway/", 1)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--no-trace", action="store_true")
    parser.add_argument("--floor", action="store_true",
                        help="hold the streams in the bare aiohttp proxy (bench/floor.py) instead")
    parser.add_argument("--frames", type=int, default=1,
                        help="frames kept per allocation; above 1, also charged to our lines")
    parser.add_argument("--hold", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from bench.client import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        if args.hold:
            runner.run(hold(args.hold, args.streams))
        else:
            started = time.monotonic()
            runner.run(measure(args.streams, args.heartbeat, not args.no_trace, args.floor,
                               args.frames))
            print(f"took {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
