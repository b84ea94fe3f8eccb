"""Side by side, in ONE run on this machine: the same workload against the mock upstream
directly, through the gateway, through the aiohttp floor (`bench/floor.py`, a bare aiohttp
proxy: what any gateway on aiohttp costs) and through nginx -> gateway; every figure with its
ratio to direct. Loopback only, bounded in time (full run < 10 min, `--quick` < 1 min).

    python bench/side_by_side.py [--quick] [--json-out PATH]     (or python -m bench.side_by_side)

Processes, so that each one's CPU and RSS are its own (read from /proc):
- this script hosts the mock upstream in-process: the disconnect row reads the mock's
  `StreamRecord.closed_at` directly (CLOCK_MONOTONIC is one clock for every process);
- the gateway (`python -m gateway serve`), the floor (`python -m bench.floor`, on the
  gateway's event loop) and nginx (the repo's nginx.conf, ports substituted as its header
  says) are subprocesses;
- the load generator is one more subprocess (`python -m bench.client`), the same client
  for every target: `gateway.bench.run`, what `llm-gateway bench` runs.
The machine has few cores: client, mock, gateway and nginx compete for them, and other
work on the machine shows in the load average printed with the table.

Rows live in `rows.py` (on every target) and `rows_fresh.py` (each on a gateway of its own);
a new row is one coroutine there, one entry in PHASES below and one section in `report.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root is not on the path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from bench import rows, rows_fresh  # noqa: E402
from bench.client import client_main, loop_factory  # noqa: E402
from bench.procs import Floor, Gateway, Nginx, find_binary  # noqa: E402
from bench.report import machine, report  # noqa: E402
from bench.resumable import resumable  # noqa: E402
from bench.runner import Run  # noqa: E402

Phase = Callable[[Run], Awaitable[None]]
#: Rows on the shared targets (direct, gateway, floor, nginx -> gateway), in order.
SHARED: tuple[tuple[str, Phase], ...] = (
    ("ttfb_and_throughput", rows.ttfb_and_throughput),
    ("disconnects", rows.disconnects),
    ("nginx_proxy", rows.nginx_proxy),
    ("translated", rows.translated),
)
#: Rows that start a gateway of their own, after the shared targets are stopped.
FRESH: tuple[tuple[str, Phase], ...] = (
    ("idle_streams", rows_fresh.idle_streams),
    ("asyncio_loop", rows_fresh.loop_variant),
    ("admission", rows_fresh.admission),
    ("workers", rows_fresh.workers),
    ("resumable", resumable),
    ("cost_growth", rows_fresh.cost_growth),  # last: in a --quick run it gets what time is left
)


async def side_by_side(quick: bool, json_out: str | None, only: frozenset[str] = frozenset()) -> int:
    """`only`: run just these rows (names from SHARED and FRESH); all when empty."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from gateway.mock import MOCK_STATE, MockSettings, start_mock

    workdir = Path(tempfile.mkdtemp(prefix="gw-side-by-side-"))
    # No upstream key on the mock: direct runs present the client's key.
    mock_runner, mock_url = await start_mock(settings=MockSettings(words=20))
    bench = Run(quick, workdir, mock_url, mock_runner.app[MOCK_STATE])
    r = bench.results
    r["machine"] = machine()
    try:
        await bench.start_client()
        if not only or only & {name for name, _ in SHARED}:
            await shared_targets(bench, only)
        for name, phase in FRESH:
            if not only or name in only:
                await bench.phase(name, phase(bench))
    except Exception as exc:  # still report what was measured
        r["failed"] = f"{type(exc).__name__}: {exc} (logs in {workdir})"
    finally:
        await bench.stop_client()
        bench.procs.stop_all()
        await mock_runner.cleanup()
        r["machine"]["load_average_end"] = os.getloadavg()
    if json_out:
        Path(json_out).write_text(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode())
    print(report(r))
    if "failed" in r:
        print(f"run failed: {r['failed']}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


async def shared_targets(bench: Run, only: frozenset[str] = frozenset()) -> None:
    """Start the gateway, the floor and nginx -> gateway, run the SHARED rows on them, stop them."""
    assert bench.client is not None
    gateway = await Gateway(bench.procs, "gateway", bench.mock_url).ready()
    nginx_bin = find_binary("nginx")
    nginx: Nginx | None = None
    floor: Floor | None = None
    try:
        floor = await Floor(bench.procs, "floor", bench.mock_url).ready()
        bench.urls = {"direct": bench.mock_url, "gateway": gateway.url, "floor": floor.url}
        bench.pids = {"gateway": gateway.pid, "floor": floor.pid, "client": bench.client.pid,
                      "mock": os.getpid()}
        if nginx_bin is not None:
            nginx = await Nginx(bench.procs, "nginx", nginx_bin, gateway.port).ready()
            bench.results["nginx_config"] = nginx.config_kind
            bench.results["nginx_pids"] = nginx.pids
            bench.urls["nginx"] = nginx.url
            bench.pids.update({f"nginx{i}": pid for i, pid in enumerate(nginx.pids)})
        for url in bench.urls.values():
            await bench.warm_up(url)
        for name, phase in SHARED:
            if not only or name in only:
                await bench.phase(name, phase(bench))
    finally:
        if nginx is not None:
            nginx.stop()
        if floor is not None:
            floor.stop()
        gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--only", default="", metavar="ROWS",
                        help="comma-separated rows to run (e.g. idle_streams,workers); all by default")
    parser.add_argument("--json-out", help="also write every raw figure to this JSON file")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        if args.client:
            runner.run(client_main())
            return 0
        return runner.run(side_by_side(args.quick, args.json_out,
                                              frozenset(filter(None, args.only.split(",")))))


if __name__ == "__main__":
    sys.exit(main())
