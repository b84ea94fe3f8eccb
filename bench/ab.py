"""Before/after on one machine: the gateway's CPU per request from two checkouts (and the
floor), alternating round by round, so that drift in the machine's other load hits both alike.

    python -m bench.ab --old /path/to/old/checkout [--also NAME=PATH] [--rounds 5] [--floor]
                       [--json-out PATH]

Each checkout is served by its own interpreter (`CHECKOUT/.venv/bin/python` when there is one,
else this one) with the checkout on PYTHONPATH; the mock runs in this process and the load
generator is `bench.client` in a subprocess (as in `bench.side_by_side`). The figure is the
process's CPU seconds (all threads, /proc) over the requests: less sensitive to other load on
a shared machine than wall time. Every round measures, on every target in turn: streams of 50
chunks at 1 and at 50 concurrent, and non-stream requests at 50 concurrent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.client import loop_factory
from bench.config import REPO, gateway_config, toml_text
from bench.procs import Floor, free_port, gateway_env, wait_ok
from bench.runner import Run

#: (label, client op, model, concurrency, requests): what one round measures on each target.
WORKLOADS: tuple[tuple[str, str, str, int, int], ...] = (
    ("stream50 c1", "bench", "mock-1+words=50", 1, 300),
    ("stream50 c50", "bench", "mock-1+words=50", 50, 1000),
    ("nonstream c50", "nonstream", "mock-1+words=50", 50, 2000),
)


def interpreter(checkout: Path) -> str:
    venv = checkout / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


async def start_gateway(bench: Run, name: str, checkout: Path) -> tuple[str, int]:
    port = free_port()
    config = bench.workdir / f"{name}.toml"
    config.write_text(toml_text(gateway_config(port, bench.mock_url)))
    env = {**gateway_env(), "PYTHONPATH": str(checkout)}
    proc = bench.procs.start(name, [interpreter(checkout), "-m", "gateway", "serve", "--config",
                                    str(config), "--loop", "auto"], env)
    url = f"http://127.0.0.1:{port}"
    await wait_ok(url + "/healthz", proc)
    return url, proc.pid


async def ab(checkouts: dict[str, Path], rounds: int, floor: bool) -> dict[str, Any]:
    from gateway.mock import MOCK_STATE, MockSettings, start_mock

    workdir = Path(tempfile.mkdtemp(prefix="gw-ab-"))
    mock_runner, mock_url = await start_mock(settings=MockSettings(words=20))
    bench = Run(False, workdir, mock_url, mock_runner.app[MOCK_STATE])
    bench.deadline += 3600
    out: dict[str, Any] = {"load_average_start": os.getloadavg()}
    try:
        await bench.start_client()
        targets: dict[str, tuple[str, int]] = {}
        for name, checkout in checkouts.items():
            targets[name] = await start_gateway(bench, name, checkout)
        if floor:
            f = await Floor(bench.procs, "floor", mock_url).ready()
            targets["floor"] = (f.url, f.pid)
        for url, _ in targets.values():
            await bench.warm_up(url)
            await bench.ask("nonstream", url=url, model="mock-1+words=50", concurrency=10,
                            requests=200)
        figures: dict[str, dict[str, list[float]]] = {
            w[0]: {t: [] for t in targets} for w in WORKLOADS}
        for i in range(rounds):
            order = list(targets.items())
            if i % 2:  # alternate who goes first too
                order.reverse()
            for label, op, model, concurrency, requests in WORKLOADS:
                for name, (url, pid) in order:
                    result, cpu = await bench.measured({name: pid}, op, url=url, model=model,
                                                       concurrency=concurrency, requests=requests)
                    bench.mock_state.reset()
                    ok = result.get("ok", requests)
                    figures[label][name].append(round(cpu[name] / max(1, ok) * 1000, 4))
            print(f"round {i + 1}: " + "; ".join(
                f"{label}: " + " ".join(f"{t}={v[-1]:.3f}" for t, v in per.items())
                for label, per in figures.items()), flush=True)
        out["cpu_ms_per_request"] = figures
        out["load_average_end"] = os.getloadavg()
    finally:
        await bench.stop_client()
        bench.procs.stop_all()
        await mock_runner.cleanup()
    return out


def summary(out: dict[str, Any]) -> str:
    lines = [f"load average {out['load_average_start']} -> {out.get('load_average_end')}"]
    for label, per in out["cpu_ms_per_request"].items():
        cells = []
        for name, values in per.items():
            cells.append(f"{name} median {statistics.median(values):.3f} ms "
                         f"[{min(values):.3f}..{max(values):.3f}]")
        lines.append(f"{label}: " + "; ".join(cells))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--old", required=True, help="the other checkout (its .venv if it has one)")
    parser.add_argument("--new", default=str(REPO), help="this checkout by default")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=PATH",
                        help="one more checkout in every round (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--floor", action="store_true", help="measure the floor in every round too")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    checkouts = {"old": Path(args.old).resolve()}
    for also in args.also:
        name, _, path = also.partition("=")
        checkouts[name] = Path(path).resolve()
    checkouts["new"] = Path(args.new).resolve()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        out = runner.run(ab(checkouts, args.rounds, args.floor))
    if args.json_out:
        Path(args.json_out).write_text(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    print(summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
