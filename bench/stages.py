"""Where a request's CPU goes, stage by stage: the gateway (or the floor) under cProfile, one
workload at a time, self time grouped by the stage of the code that spent it.

    python -m bench.stages [--checkout PATH] [--floor] [--requests N] [--top K]

The gateway runs as `python -m bench.stages --serve OUT -- <gateway argv>`: SIGUSR1 switches
the profiler on, SIGUSR2 off and dumps it to OUT (so start-up and warm-up are not counted).
The time of a builtin (`bytes.find`, `orjson.loads`, a lock) goes to the stage of its caller,
split as cProfile saw its callers. cProfile inflates Python calls against C ones: the shares
of Python code are upper bounds. Workloads: non-stream requests at 50 concurrent, 50-chunk
streams at 1 and 50 (the mock upstream runs in this process, the load is `bench.client`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import signal
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

#: (prefix of a path under gateway/, stage); first match wins, the rest of gateway/ is "other".
STAGES = (
    ("auth.py", "auth, routing"), ("store/", "auth, routing"), ("tags.py", "auth, routing"),
    ("routing.py", "auth, routing"), ("routes.py", "auth, routing"),
    ("body.py", "body"), ("exact_usage.py", "body"), ("codecs/chat_request", "body"),
    ("admission/", "admission"),
    ("upstream/", "attempt"), ("relay/client.py", "attempt"), ("connections.py", "attempt"),
    ("breaker.py", "attempt"), ("retry.py", "attempt"), ("health.py", "attempt"),
    ("relay/", "relay"), ("markers.py", "relay"), ("sse.py", "relay"), ("dialects/", "relay"),
    ("codecs/", "relay"),
    ("record.py", "record"), ("api/stages.py", "record"), ("spend.py", "record"),
    ("prices.py", "record"),
    ("api/", "pipeline"), ("middleware.py", "middleware"), ("errors.py", "middleware"),
    ("logs.py", "log"), ("metrics.py", "metrics"), ("tracing.py", "middleware"),
)
WORKLOADS = (("nonstream", 50, 50, 600), ("stream", 50, 50, 400), ("stream", 50, 1, 200))


def stage_of(filename: str) -> str:
    path = filename.replace(os.sep, "/")
    if "/structlog/" in path:
        return "log"
    if "/prometheus_client/" in path:
        return "metrics"
    if "/gateway/" in path:
        inner = path.rsplit("/gateway/", 1)[1]
        return next((stage for prefix, stage in STAGES if inner.startswith(prefix)), "other")
    if "/bench/floor.py" in path:
        return "floor"
    if "/aiohttp/" in path or "/multidict/" in path or "/yarl/" in path:
        return "aiohttp"
    if "/asyncio/" in path or "uvloop" in path:
        return "event loop"
    return "python"


def stage_table(stats: pstats.Stats) -> dict[str, float]:
    """Self time per stage; a builtin's (`~`) goes to its callers' stages."""
    table: dict[str, float] = defaultdict(float)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, tottime, _, callers) in raw.items():
        if filename != "~":
            table[stage_of(filename)] += tottime
            continue
        share = sum(c[2] for c in callers.values()) or 1.0
        for (caller_file, _, _), caller in callers.items():
            table[stage_of(caller_file) if caller_file != "~" else "python"] += (
                tottime * caller[2] / share)
    return table


def serve(out: str, argv: list[str]) -> int:
    """Runs `llm-gateway argv` (or the floor, argv[0] == "floor") with the signal switches."""
    profiler = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())

    def dump(*_: object) -> None:
        profiler.disable()
        profiler.dump_stats(out)
        profiler.clear()

    signal.signal(signal.SIGUSR2, dump)
    if argv[0] == "floor":
        sys.argv = ["bench.floor", *argv[1:]]
        from bench.floor import main as floor_main
        return floor_main()
    from gateway.cli import main as gateway_main
    return gateway_main(argv)


async def measure(checkout: Path, floor: bool, top: int, scale: float, everything: bool) -> None:
    from bench.ab import interpreter
    from bench.client import Client
    from bench.config import CLIENT_KEY, gateway_config, toml_text
    from bench.instructions import spawn, warm_up
    from bench.procs import free_port, wait_ok
    from gateway.bench import run
    from gateway.mock import MockSettings, start_mock

    runner, mock_url = await start_mock(settings=MockSettings(words=20))
    work = Path(tempfile.mkdtemp(prefix="gw-stages-"))
    port = free_port()
    config = work / "gateway.toml"
    config.write_text(toml_text(gateway_config(port, mock_url)))
    out = work / "profile"
    target = (["floor", "--port", str(port), "--upstream", mock_url] if floor else
              ["serve", "--config", str(config), "--loop", "auto"])
    proc = spawn([interpreter(checkout), "-m", "bench.stages", "--serve", str(out), "--", *target],
                 checkout, work)
    url = f"http://127.0.0.1:{port}"
    client = Client()
    try:
        await wait_ok(url + "/healthz", proc, timeout=60)
        await warm_up(url, client)
        for kind, chunks, concurrency, requests in WORKLOADS:
            requests = max(20, int(requests * scale))
            out.unlink(missing_ok=True)
            proc.send_signal(signal.SIGUSR1)
            await asyncio.sleep(0.2)
            model = f"mock-1+words={chunks}"
            result = (await run(url, CLIENT_KEY, model, concurrency, requests) if kind == "stream"
                      else await client.nonstream(url, model, concurrency, requests))
            proc.send_signal(signal.SIGUSR2)
            for _ in range(100):
                if out.exists() and out.stat().st_size:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            report(f"{kind}, {chunks} chunks, {concurrency} concurrent, {result['ok']} ok",
                   pstats.Stats(str(out)), max(1, result["ok"]), top, everything)
    finally:
        proc.terminate()
        proc.wait(60)
        await runner.cleanup()


#: Where the gateway's own code lives (the top list shows these; `--everything`: any file).
OURS = ("/gateway/", "/structlog/", "/prometheus_client/")
#: The stages that are not the gateway's own code.
NOT_OURS = ("aiohttp", "event loop", "python", "floor")


def report(title: str, stats: pstats.Stats, ok: int, top: int, everything: bool = False) -> None:
    table = stage_table(stats)
    total = sum(table.values()) or 1.0
    ours = sum(v for k, v in table.items() if k not in NOT_OURS)
    share = f"gateway's own stages: {ours / total:.0%}" if ours else "no gateway stages"
    print(f"\n## {title}: {total / ok * 1e3:.3f} ms profiled per request ({share})")
    print("| stage | ms per request | of all | of ours |\n|---|---|---|---|")
    for stage, seconds in sorted(table.items(), key=lambda kv: -kv[1]):
        mine = "" if stage in NOT_OURS else f"{seconds / ours:.0%}"
        print(f"| {stage} | {seconds / ok * 1e3:.4f} | {seconds / total:.1%} | {mine} |")
    if top:
        print(f"\ntop {top} functions (self time; a builtin's is its own here):")
        rows = []
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        for (filename, line, name), (_, calls, tottime, _, _) in raw.items():
            if everything or any(part in filename for part in OURS):
                rows.append((tottime, calls, f"{filename.rsplit('/', 2)[-2:]}:{line} {name}"))
        for tottime, calls, where in sorted(rows, reverse=True)[:top]:
            print(f"  {tottime / ok * 1e6:8.1f} us/req {calls / ok:6.1f} calls/req  {where}")
    sys.stdout.flush()


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[sys.argv.index("--") + 1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--checkout", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--floor", action="store_true", help="profile the floor instead")
    parser.add_argument("--scale", type=float, default=1.0, help="times the default requests")
    parser.add_argument("--top", type=int, default=25, help="slowest functions to list")
    parser.add_argument("--everything", action="store_true",
                        help="list aiohttp's and the library's functions too, not ours only")
    args = parser.parse_args()
    from bench.client import loop_factory
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(measure(Path(args.checkout).resolve(), args.floor, args.top, args.scale,
                           args.everything))
    return 0


if __name__ == "__main__":
    sys.exit(main())
