"""Userspace instructions per request of one gateway checkout (or the floor), under callgrind:
deterministic to about 1% and blind to other load on the machine, where CPU time on a shared
machine moves by +-25% between identical rounds. Needs valgrind.

    python -m bench.instructions [--checkout PATH] [--floor] [--streams] [--priced] [--budget]

The process runs under `valgrind --tool=callgrind --instr-atstart=no`; after a warm-up,
collection is switched on (`callgrind_control -i on`) for one workload at a time and dumped:
50-chunk streams at 1 and 50 concurrent, non-stream requests at 50 and 1, 200-chunk streams at 1
and 50, and paced 50-chunk streams at 1 (the mock's `tps=200`: a read is one event, as with a
real model's pace; `--streams`: the streams only). `--priced` gives the mock's models a price
(`[prices."mock-*"]`: every answer's cost is worked out), `--budget` also a budget to the
tenant (reserved and settled on every request). The mock runs in
this process, the load is `gateway.bench.run` / `bench.client.Client.nonstream`. It does not
count the kernel's share (socket reads and writes).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.ab import interpreter
from bench.client import Client, loop_factory
from bench.config import CLIENT_KEY, REPO, UPSTREAM_KEY, UPSTREAM_KEY_ENV, gateway_config, toml_text
from bench.procs import free_port, wait_ok
from gateway.bench import run

#: (kind, chunks, concurrency, requests)
WORKLOADS = (("stream", 50, 1, 100), ("stream", 50, 50, 200),
             ("nonstream", 50, 50, 300), ("nonstream", 50, 1, 100),
             ("stream", 200, 1, 50), ("stream", 200, 50, 100), ("paced", 50, 1, 30))


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], capture_output=True, check=False)


def _total(out: Path) -> int:
    dumps = sorted(glob.glob(f"{out}*"), key=os.path.getmtime)
    for line in Path(dumps[-1]).read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")) and int(line.split()[1]):
            return int(line.split()[1])
    return 0


def priced_config(text: str, budget: bool) -> str:
    """The bench config with a price for the mock's models, and a budget on its tenant."""
    if budget:
        text = text.replace("[[tenants]]\n", "[[tenants]]\nbudget_usd = 1000000000.0\n", 1)
    return text + '\n[prices."mock-*"]\ninput = 0.15\noutput = 0.6\n'


def spawn(argv: list[str], checkout: Path, work: Path) -> subprocess.Popen[bytes]:
    """A measured process: the bench's upstream key in its environment, `checkout` on its
    path, its output in `work/log` (`bench.stages` starts its profiled gateway so too)."""
    env = {**os.environ, UPSTREAM_KEY_ENV: UPSTREAM_KEY, "PYTHONPATH": str(checkout)}
    with open(work / "log", "wb") as log:
        return subprocess.Popen(argv, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)


async def warm_up(url: str, client: Client) -> None:
    """Streams and non-stream requests through `url`, before anything is counted."""
    await run(url, CLIENT_KEY, "mock-1+words=50", 10, 40)
    await client.nonstream(url, "mock-1+words=50", 10, 40)


async def measure(checkout: Path, floor: bool, streams: bool = False, priced: bool = False,
                  budget: bool = False) -> None:
    from gateway.mock import MockSettings, start_mock

    runner, mock_url = await start_mock(settings=MockSettings(words=20))
    work = Path(tempfile.mkdtemp(prefix="gw-instructions-"))
    port = free_port()
    config = work / "gateway.toml"
    text = toml_text(gateway_config(port, mock_url))
    config.write_text(priced_config(text, budget) if priced or budget else text)
    python = interpreter(checkout)
    argv = ([python, "-m", "bench.floor", "--port", str(port), "--upstream", mock_url] if floor else
            [python, "-m", "gateway", "serve", "--config", str(config), "--loop", "auto"])
    out = work / "callgrind.out"
    proc = spawn(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                  f"--callgrind-out-file={out}", *argv], checkout, work)
    url = f"http://127.0.0.1:{port}"
    client = Client()
    try:
        await wait_ok(url + "/healthz", proc, timeout=300)
        await warm_up(url, client)
        for kind, chunks, concurrency, requests in WORKLOADS:
            if streams and kind == "nonstream":
                continue
            _control("-z", str(proc.pid))
            _control("-i", "on", str(proc.pid))
            model = f"mock-1+words={chunks}" + (",tps=200" if kind == "paced" else "")
            result = (await run(url, CLIENT_KEY, model, concurrency, requests) if kind != "nonstream"
                      else await client.nonstream(url, model, concurrency, requests))
            _control("-i", "off", str(proc.pid))
            _control("-d", f"{kind}{chunks}c{concurrency}", str(proc.pid))
            ok = max(1, result["ok"])
            print(f"{'floor' if floor else checkout.name} {kind} {chunks} chunks, {concurrency} "
                  f"concurrent: {result['ok']} ok, {_total(out) / ok / 1e6:.3f} M instructions "
                  "per request", flush=True)
    finally:
        proc.terminate()
        proc.wait(120)
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--checkout", default=str(REPO), help="its .venv's python when it has one")
    parser.add_argument("--floor", action="store_true", help="measure the floor instead")
    parser.add_argument("--streams", action="store_true", help="the stream workloads only")
    parser.add_argument("--priced", action="store_true", help="the mock's models have a price")
    parser.add_argument("--budget", action="store_true", help="priced, and the tenant a budget")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(measure(Path(args.checkout).resolve(), args.floor, args.streams,
                           args.priced, args.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
