"""Side by side, in ONE run on this machine: the same workload against the mock upstream
directly, through the gateway, and through nginx -> gateway; every figure with its ratio
to direct. Loopback only, bounded in time (full run < 10 min, `--quick` < 1 min).

    /tmp/venv/bin/python bench/side_by_side.py [--quick] [--json-out PATH]

Processes, so that each one's CPU and RSS are its own (read from /proc):
- this script hosts the mock upstream in-process: the disconnect test reads the mock's
  `StreamRecord.closed_at` directly (CLOCK_MONOTONIC is one clock for every process);
- the gateway (`python -m gateway serve`) and nginx (the repo's nginx.conf, ports
  substituted as its header says) are subprocesses;
- the load generator is one more subprocess of this script (`--client`), the same client
  for every target: `gateway.bench.run`, what `llm-gateway bench` runs.
The machine has few cores: client, mock, gateway and nginx compete for them, and other
work on the machine shows in the load average printed with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.bench import chat_url, run  # noqa: E402

CLIENT_KEY = "sk-bench-side-by-side"
UPSTREAM_KEY = "bench-upstream-key"
IDLE_MODEL = "mock-1+silence=300@0"  # head event, then silence: the gateway sends heartbeats
HEARTBEAT_SECONDS = 2.0
STALL_SECONDS = 1.0  # a gap between two reads longer than this on a paced stream is a stall
PACED = "50 (50 tok/s)"  # the TTFB row whose streams are paced like a real model's
TICK = os.sysconf("SC_CLK_TCK")
TARGETS = ("direct", "gateway", "nginx")


# -- the load generator (`--client`): JSON commands on stdin, one JSON answer each on stdout --


class Client:
    def __init__(self) -> None:
        self.idle: list[asyncio.Task[None]] = []
        self.idle_session: aiohttp.ClientSession | None = None
        self.opened = 0
        self.failed: Counter[str] = Counter()
        self.pings = 0

    async def bench(self, url: str, model: str, concurrency: int, requests: int) -> dict[str, Any]:
        return await run(url, CLIENT_KEY, model, concurrency, requests)

    async def idle_open(self, url: str, n: int, parallel: int, timeout: float) -> dict[str, Any]:
        """Open `n` streams that stay open (the mock goes silent after its first event)."""
        connector = aiohttp.TCPConnector(limit=0)
        self.idle_session = session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))
        self.opened, self.failed, self.pings = 0, Counter(), 0
        gate = asyncio.Semaphore(parallel)
        body = orjson.dumps(_chat_body(IDLE_MODEL))

        async def hold() -> None:
            await gate.acquire()
            waiting = True
            try:
                async with session.post(chat_url(url), data=body, headers=_headers()) as resp:
                    if resp.status != 200:
                        self.failed[str(resp.status)] += 1
                        return
                    await resp.content.readany()
                    self.opened += 1
                    gate.release()
                    waiting = False
                    async for data in resp.content.iter_any():
                        self.pings += data.count(b": ping")
            except aiohttp.ClientError as exc:
                self.failed[type(exc).__name__] += 1
            finally:
                if waiting:
                    gate.release()

        started = time.monotonic()
        self.idle = [asyncio.create_task(hold()) for _ in range(n)]
        while self.opened + sum(self.failed.values()) < n and time.monotonic() - started < timeout:
            await asyncio.sleep(0.05)
        return {"opened": self.opened, "failed": dict(self.failed),
                "seconds": round(time.monotonic() - started, 3)}

    async def idle_close(self) -> dict[str, Any]:
        for task in self.idle:
            task.cancel()
        await asyncio.gather(*self.idle, return_exceptions=True)
        if self.idle_session is not None:
            await self.idle_session.close()
        result = {"closed": len(self.idle), "pings": self.pings}
        self.idle, self.idle_session = [], None
        return result

    async def disconnect(self, url: str, n: int, after: int, prefix: str) -> dict[str, Any]:
        """Open paced streams one by one; close each after `after` content chunks, noting when."""
        closes: list[tuple[str, float]] = []
        body = orjson.dumps(_chat_body("mock-1+tps=50,words=500"))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for i in range(n):
                rid = f"{prefix}-{i}"
                resp = await session.post(chat_url(url), data=body,
                                          headers={**_headers(), "X-Request-ID": rid})
                got = 0
                while got < after:
                    data = await resp.content.readany()
                    if not data:
                        break
                    got += data.count(b'"content":"') - data.count(b'"content":""')
                closes.append((rid, time.monotonic()))
                resp.close()
                await asyncio.sleep(0.02)
        return {"closes": closes}


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


def _chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def client_main() -> None:
    client = Client()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command = orjson.loads(line)
        op = command.pop("op")
        if op == "quit":
            return
        result = await getattr(client, op)(**command)
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        sys.stdout.flush()


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, in ns precision (schedstat), else in ticks."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


class Procs:
    """Every process this run starts, stopped by its own PID at the end (SIGKILL last)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              stdout: int | None = None) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_all
        self.logs.append(log)
        proc = subprocess.Popen(argv, stdout=stdout if stdout is not None else log, stderr=log,
                                env=env, cwd=self.workdir)
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc)
        for log in self.logs:
            log.close()


async def wait_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def gateway_toml(port: int, mock_url: str, heartbeat: float, streams: int, extra: str = "") -> str:
    import hashlib

    return f"""
[server]
host = "127.0.0.1"
port = {port}
heartbeat_seconds = {heartbeat}
[limits]
max_concurrent_streams = {streams}
max_queue = {streams}
queue_timeout_seconds = 60
{extra}
[[upstreams]]
name = "mock"
dialect = "openai"
base_url = "{mock_url}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
models = ["mock-*"]
first_byte_timeout_seconds = 30
idle_timeout_seconds = 600
total_timeout_seconds = 900
[[tenants]]
name = "bench"
key_sha256 = "{hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}"
requests_per_minute = 1000000000
tokens_per_minute = 1000000000000
"""


class Gateway:
    def __init__(self, procs: Procs, name: str, mock_url: str, *, heartbeat: float = HEARTBEAT_SECONDS,
                 streams: int = 10_500, loop: str = "auto", extra: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = procs.workdir / f"{name}.toml"
        config.write_text(gateway_toml(self.port, mock_url, heartbeat, streams, extra))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
               "BENCH_UPSTREAM_KEY": UPSTREAM_KEY, "PYTHONPATH": str(REPO)}
        self.proc = procs.start(name, [sys.executable, "-m", "gateway", "serve", "--config",
                                       str(config), "--loop", loop], env)
        self.pid = self.proc.pid

    async def heartbeats(self) -> float:
        async with aiohttp.ClientSession() as session, session.get(self.url + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith("gateway_heartbeats_total "):
                    return float(line.split()[1])
        return 0.0


def nginx_conf(listen: int, gateway_port: int) -> tuple[str, str]:
    """The repo's nginx.conf with its two documented lines substituted (see its header),
    else a minimal streaming proxy config; and which one it is."""
    path = REPO / "nginx.conf"
    if path.exists():
        text, listens = re.subn(r"(?m)^(\s*)listen 80;$", rf"\g<1>listen 127.0.0.1:{listen};",
                                path.read_text())
        text, servers = re.subn(r"(?m)^(\s*)server 127\.0\.0\.1:8080;$",
                                rf"\g<1>server 127.0.0.1:{gateway_port};", text)
        if listens == servers == 1:
            return text, "repo nginx.conf"
    return f"""worker_processes auto; pid nginx.pid; error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
  client_body_temp_path cbt; proxy_temp_path pt; fastcgi_temp_path ft; uwsgi_temp_path ut;
  scgi_temp_path st; access_log off; gzip off;
  upstream gateway {{ server 127.0.0.1:{gateway_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{listen};
    location / {{ proxy_pass http://gateway; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; proxy_request_buffering off;
      proxy_read_timeout 3600s; proxy_pass_request_headers on; }} }}
}}
""", "minimal config (repo nginx.conf missing or changed)"


# -- the benchmark ---------------------------------------------------------------------------------


class Run:
    def __init__(self, quick: bool, workdir: Path) -> None:
        self.quick = quick
        self.deadline = time.monotonic() + (57 if quick else 570)
        self.procs = Procs(workdir)
        self.workdir = workdir
        self.results: dict[str, Any] = {"quick": quick}
        self.client: asyncio.subprocess.Process | None = None

    async def phase(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        started = time.monotonic()
        await work
        self.results.setdefault("phase_seconds", {})[name] = round(time.monotonic() - started, 1)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    async def ask(self, op: str, wait_s: float = 180, **args: Any) -> dict[str, Any]:
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


async def side_by_side(quick: bool, json_out: str | None) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from gateway.mock import MOCK_STATE, MockSettings, start_mock

    workdir = Path(tempfile.mkdtemp(prefix="gw-side-by-side-"))
    bench = Run(quick, workdir)
    r = bench.results
    r["machine"] = machine()
    # No upstream key on the mock: direct runs present the client's key.
    mock_runner, mock_url = await start_mock(settings=MockSettings(words=20))
    mock_state = mock_runner.app[MOCK_STATE]
    nginx: subprocess.Popen[bytes] | None = None
    try:
        bench.client = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        gateway = Gateway(bench.procs, "gateway", mock_url)
        await wait_ok(gateway.url + "/healthz", gateway.proc)
        nginx_port = free_port()
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        urls = {"direct": mock_url, "gateway": gateway.url}
        if Path(nginx_bin).exists():
            conf, r["nginx_config"] = nginx_conf(nginx_port, gateway.port)
            (workdir / "nginx.conf").write_text(conf)
            nginx = bench.procs.start("nginx", [nginx_bin, "-p", str(workdir), "-c",
                                                str(workdir / "nginx.conf"), "-e", "stderr",
                                                "-g", "daemon off;"], stdout=subprocess.DEVNULL)
            urls["nginx"] = f"http://127.0.0.1:{nginx_port}"
            await wait_ok(urls["nginx"] + "/healthz", nginx)
            r["nginx_pids"] = [nginx.pid, *children(nginx.pid)]
        pids = {"gateway": gateway.pid, "client": bench.client.pid, "mock": os.getpid(),
                **{f"nginx{i}": pid for i, pid in enumerate(r.get("nginx_pids", []))}}

        for url in urls.values():  # warm up: connections, imports, caches
            await bench.ask("bench", url=url, model="mock-1", concurrency=10, requests=50)
        await bench.phase("ttfb_and_throughput", ttfb_and_throughput(bench, urls, pids, mock_state))
        await bench.phase("disconnects", disconnects(bench, urls, mock_state))
        if nginx is not None:  # not needed any more
            bench.procs.stop(nginx)
        bench.procs.stop(gateway.proc)
        # Idle streams on fresh gateways, so RSS at rest is not the heap earlier phases grew.
        for name, heartbeat, counts in (
                ("heartbeat_on", HEARTBEAT_SECONDS, [1000, 2000] if quick else [1000, 9_900]),
                ("heartbeat_off", 0.0, [1000] if quick else [1000, 9_900])):
            idle_gateway = Gateway(bench.procs, f"gateway-{name}", mock_url, heartbeat=heartbeat)
            await wait_ok(idle_gateway.url + "/healthz", idle_gateway.proc)
            await bench.phase(name, idle_streams(bench, idle_gateway, name, counts))
            bench.procs.stop(idle_gateway.proc)
        if not quick:
            await bench.phase("asyncio_loop", loop_variant(bench, mock_url))
        await bench.phase("admission", admission(bench, mock_url))
    except Exception as exc:  # still report what was measured
        r["failed"] = f"{type(exc).__name__}: {exc} (logs in {workdir})"
    finally:
        if bench.client is not None and bench.client.returncode is None:
            with contextlib.suppress(Exception):
                assert bench.client.stdin is not None
                bench.client.stdin.write(b'{"op": "quit"}\n')
                await asyncio.wait_for(bench.client.wait(), 5)
            if bench.client.returncode is None:
                bench.client.kill()
                await bench.client.wait()
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
    if json_out:
        Path(json_out).write_text(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode())
    return 0


async def ttfb_and_throughput(bench: Run, urls: dict[str, str], pids: dict[str, int],
                              mock_state: Any) -> None:
    """Each workload runs on every target in turn, several rounds where it is cheap (drift in
    the machine's other load then hits all targets alike); the median round is reported."""
    quick = bench.quick
    r = bench.results
    fast, paced = "mock-1+words=20", "mock-1+words=20,tps=50"
    ttfb_runs = ([("1", 100, 2, fast), ("50", 200, 2, fast), (PACED, 100, 1, paced)] if quick else
                 [("1", 300, 3, fast), ("50", 600, 3, fast), (PACED, 300, 3, paced),
                  ("100", 800, 1, fast), ("500", 1500, 1, fast)])
    for label, requests, rounds, model in ttfb_runs:
        r.setdefault("ttfb", {})[label] = await median_round(
            bench, urls, pids, mock_state, rounds, lambda x: x["ttfb_ms"]["p50"] or 0.0,
            model=model, concurrency=int(label.split()[0]), requests=requests)
    streams = [(1, "mock-1+words=3000" if quick else "mock-1+words=5000", 3 if quick else 6),
               (50, "mock-1+words=300" if quick else "mock-1+words=1000", 50 if quick else 150)]
    for concurrency, model, requests in streams:
        r.setdefault("chunks", {})[str(concurrency)] = await median_round(
            bench, urls, pids, mock_state, 3, lambda x: x["tokens_per_second"],
            model=model, concurrency=concurrency, requests=requests)
    stall_n, words = (128, 10) if quick else (512, 30)
    r["stall"] = await median_round(  # paced streams: a gap past STALL_SECONDS is a stall
        bench, urls, pids, mock_state, 1, lambda x: x["max_gap_ms"],
        model=f"mock-1+tps=10,words={words}", concurrency=stall_n, requests=stall_n)


async def median_round(bench: Run, urls: dict[str, str], pids: dict[str, int], mock_state: Any,
                       rounds: int, key: Callable[[dict[str, Any]], float], **workload: Any
                       ) -> dict[str, dict[str, Any]]:
    results: dict[str, list[dict[str, Any]]] = {target: [] for target in urls}
    for _ in range(rounds):
        for target, url in urls.items():
            result, cpu = await bench.measured(pids, "bench", url=url, **workload)
            results[target].append({**result, "cpu": cpu})
            mock_state.reset()
    return {target: sorted(runs, key=key)[len(runs) // 2] for target, runs in results.items()}


async def disconnects(bench: Run, urls: dict[str, str], mock_state: Any) -> None:
    n = 5 if bench.quick else 20
    for target, url in urls.items():
        answer = await bench.ask("disconnect", url=url, n=n, after=3, prefix=f"disc-{target}")
        records = {s.request_id: s for s in mock_state.streams}
        latencies = []
        for rid, closed in answer["closes"]:
            record = records.get(rid)
            if record is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.ended.wait(), 5)
            if record.closed_at is not None and not record.completed:
                latencies.append(record.closed_at - closed)
        bench.results.setdefault("disconnect", {})[target] = {"n": n, "ms": sorted(
            round(x * 1000, 3) for x in latencies)}
        mock_state.reset()


async def idle_streams(bench: Run, gateway: Gateway, name: str, counts: list[int]) -> None:
    """Gateway RSS and CPU with N idle open streams (the mock silent after its first event)."""
    window = HEARTBEAT_SECONDS if bench.quick else 2 * HEARTBEAT_SECONDS
    out = bench.results.setdefault("idle", {}).setdefault(name, {})
    await bench.ask("bench", url=gateway.url, model="mock-1", concurrency=10, requests=50)
    await asyncio.sleep(0.5)
    out["rss_base"] = rss_bytes(gateway.pid)
    for n in counts:
        if bench.left() < 6 + 3 * window + n / 300:  # opening runs at a few hundred streams/s
            out[str(n)] = {"skipped": "out of time"}
            continue
        cpu0 = cpu_seconds(gateway.pid)
        opened = await bench.ask("idle_open", url=gateway.url, n=n, parallel=200,
                                 timeout=min(120, bench.left() - 15))
        open_cpu = cpu_seconds(gateway.pid) - cpu0
        await asyncio.sleep(HEARTBEAT_SECONDS + 0.5)  # let every stream reach its heartbeat rhythm
        # Two or three windows, each a whole number of heartbeat periods; the quietest is reported
        # (other work on the machine only ever adds CPU time).
        windows = []
        for _ in range(2 if bench.quick else 3):
            beats0, cpu1, t1 = await gateway.heartbeats(), cpu_seconds(gateway.pid), time.monotonic()
            await asyncio.sleep(window)
            beats1, cpu2, t2 = await gateway.heartbeats(), cpu_seconds(gateway.pid), time.monotonic()
            windows.append({"idle_cpu": cpu2 - cpu1, "window": t2 - t1, "heartbeats": beats1 - beats0})
        quietest = min(windows, key=lambda w: w["idle_cpu"] / w["window"])
        rss = rss_bytes(gateway.pid)
        closed = await bench.ask("idle_close")
        out[str(n)] = {**opened, "open_cpu": open_cpu, "rss": rss, **quietest, "windows": windows,
                       "pings_seen": closed["pings"]}
        await asyncio.sleep(1.0)
        out[str(n)]["rss_after_close"] = rss_bytes(gateway.pid)


async def loop_variant(bench: Run, mock_url: str) -> None:
    """The gateway on the stdlib asyncio loop, same workload as the uvloop rows."""
    if bench.left() < 60:
        return
    gateway = Gateway(bench.procs, "gateway-asyncio", mock_url, loop="asyncio")
    await wait_ok(gateway.url + "/healthz", gateway.proc)
    await bench.ask("bench", url=gateway.url, model="mock-1", concurrency=10, requests=50)
    out = bench.results.setdefault("asyncio_loop", {})
    for concurrency, requests in ((1, 300), (50, 600)):
        out[f"ttfb{concurrency}"] = await bench.ask(
            "bench", url=gateway.url, model="mock-1+words=20", concurrency=concurrency,
            requests=requests)
    for concurrency, model, requests in ((1, "mock-1+words=5000", 6), (50, "mock-1+words=1000", 150)):
        result, cpu = await bench.measured({"gateway": gateway.pid}, "bench", url=gateway.url,
                                           model=model, concurrency=concurrency, requests=requests)
        out[f"chunks{concurrency}"] = {**result, "cpu": cpu}
    bench.procs.stop(gateway.proc)


async def admission(bench: Run, mock_url: str) -> None:
    out = bench.results.setdefault("admission", {})
    try:
        sys.path.insert(0, str(REPO / "bench"))
        from admission import measure_admission  # type: ignore[import-not-found]
    except ImportError as exc:
        out["missing"] = f"bench/admission.py: {exc}"
        return
    out["memory"] = await measure_admission("memory", 5_000 if bench.quick else 20_000)
    redis_bin = shutil.which("redis-server")
    if redis_bin is None or bench.left() < 5:
        out["redis"] = {"skipped": "no redis-server" if redis_bin is None else "out of time"}
        return
    port = free_port()
    bench.procs.start("redis", [redis_bin, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"])
    url = f"redis://127.0.0.1:{port}/15"
    for _ in range(50):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        await asyncio.sleep(0.1)
    out["redis"] = await measure_admission("redis", 500 if bench.quick else 2_000, url)
    if not bench.quick and bench.left() > 40:  # the same per-request cost inside the gateway
        for backend, extra in (("memory", ""), ("redis", f'[ratelimit]\nbackend = "redis"\n'
                                                         f'redis_url = "{url}"\nfail_open = false')):
            gateway = Gateway(bench.procs, f"gateway-{backend}", mock_url, extra=extra)
            await wait_ok(gateway.url + "/healthz", gateway.proc)
            await bench.ask("bench", url=gateway.url, model="mock-1", concurrency=10, requests=50)
            out[f"gateway_{backend}"] = await bench.ask(
                "bench", url=gateway.url, model="mock-1+words=20", concurrency=1, requests=300)
            bench.procs.stop(gateway.proc)


# -- the report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    try:
        import uvloop
        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    nginx = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"], capture_output=True,
                           text=True, check=False).stderr.strip() if shutil.which("nginx") or Path(
        "/usr/sbin/nginx").exists() else "not installed"
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "aiohttp": aiohttp.__version__, "loop": loop, "nginx": nginx,
            "load_average_start": os.getloadavg()}


def _conc(label: str) -> str:
    count, _, how = label.partition(" ")
    return f"{count} concurrent {how}".rstrip()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(r: dict[str, Any]) -> str:
    rows: list[tuple[str, dict[str, float | None], str]] = []
    for c, per in r.get("ttfb", {}).items():
        for p in ("p50", "p99"):
            rows.append((f"TTFB {p} ms, {_conc(c)}", {t: per[t]["ttfb_ms"][p] for t in per}, ".3f"))
    for c, per in r.get("chunks", {}).items():
        rows.append((f"chunks/s, {c} concurrent", {t: per[t]["tokens_per_second"] for t in per}, ",.0f"))
        rows.append((f"  all processes CPU s/1k chunks, {c} c.", {
            t: sum(per[t]["cpu"].values()) / per[t]["tokens"] * 1000 if per[t]["tokens"] else None
            for t in per}, ".4f"))
        for proc in ("gateway", "client", "mock"):
            rows.append((f"  {proc} CPU s/1k chunks, {c} c.", {
                t: per[t]["cpu"][proc] / per[t]["tokens"] * 1000 if per[t]["tokens"] else None
                for t in per if t != "direct" or proc != "gateway"}, ".4f"))
        nginx = {t: sum(v for k, v in per[t]["cpu"].items() if k.startswith("nginx"))
                 / per[t]["tokens"] * 1000 for t in per if t == "nginx" and per[t]["tokens"]}
        if nginx:
            rows.append((f"  nginx CPU s/1k chunks, {c} c.", nginx, ".4f"))
    stall = r.get("stall", {})
    if stall:
        n = next(iter(stall.values()))["requests"]
        rows.append((f"{n} streams at 10 tok/s: ok", {t: stall[t]["ok"] for t in stall}, "d"))
        rows.append((f"{n} streams at 10 tok/s: max gap ms", {
            t: stall[t]["max_gap_ms"] for t in stall}, ",.1f"))
    disc = r.get("disconnect", {})
    for p, name in ((0.5, "p50"), (1.0, "max")):
        rows.append((f"disconnect->upstream close {name} ms", {
            t: d["ms"][min(len(d["ms"]) - 1, int(p * len(d["ms"])))] if d["ms"] else None
            for t, d in disc.items()}, ".2f"))
    width = 40
    lines = [f"{'figure':<{width}}{'direct':>12}{'gateway':>12}{'nginx->gw':>12}"
             f"{'gw/direct':>11}{'ngx/direct':>11}"]
    for label, values, spec in rows:
        d, g, n = (values.get(t) for t in TARGETS)
        ratio = [f"{x / d:.2f}x" if x is not None and d else "-" for x in (g, n)]
        lines.append(f"{label:<{width}}{_fmt(d, spec):>12}{_fmt(g, spec):>12}{_fmt(n, spec):>12}"
                     f"{ratio[0]:>11}{ratio[1]:>11}")
    for c, per in r.get("ttfb", {}).items():
        d = per["direct"]["ttfb_ms"]["p50"]
        added = [per[t]["ttfb_ms"]["p50"] - d for t in ("gateway", "nginx") if t in per]
        lines.append(f"added TTFB p50, {_conc(c)}: " + ", ".join(
            f"{t} {a:+.3f} ms" for t, a in zip(("gateway", "nginx->gw"), added, strict=False)))
    errors = {f"{k}/{c}/{t}": v["errors"] for k in ("ttfb", "chunks") for c, per in
              r.get(k, {}).items() for t, v in per.items() if v["errors"]}
    lines.append(f"errors: {errors or 'none'}")
    lines += idle_lines(r.get("idle", {}))
    lines += extra_lines(r)
    m = r["machine"]
    lines.append(f"machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, aiohttp "
                 f"{m['aiohttp']}, loop {m['loop']} (gateway, mock and client), {m['nginx']} "
                 f"({r.get('nginx_config', 'not run')}); "
                 f"load average {m['load_average_start'][0]:.2f} at start, "
                 f"{m['load_average_end'][0]:.2f} at end")
    lines += targets(r)
    lines += [
        "notes: TTFB = request sent -> first body byte; chunks = content chunks counted by the",
        "  client. The mock writes one event per TCP segment, so direct, the client pays one read",
        "  per chunk; the gateway writes all it read in one write, so under load the client reads",
        "  fewer, larger segments (direct chunks/s can be client-bound: compare the CPU rows).",
        "  All processes share the CPUs, so at 100+ concurrent streams TTFB is mostly queueing.",
    ]
    return "\n".join(lines)


def idle_lines(idle: dict[str, Any]) -> list[str]:
    lines = []
    per_stream_cpu: dict[str, dict[str, float]] = {}
    for name, out in idle.items():
        base = out.get("rss_base", 0)
        lines.append(f"idle streams, {name.replace('_', ' ')} (heartbeat every {HEARTBEAT_SECONDS:g} s "
                     f"when on; idle CPU: the quietest window): gateway RSS at rest "
                     f"{base / 2**20:.1f} MiB")
        for n, x in out.items():
            if not n.isdigit():
                continue
            if "skipped" in x:
                lines.append(f"  {n}: skipped ({x['skipped']})")
                continue
            opened = x["opened"] or 1
            cpu_per = x["idle_cpu"] / x["window"] / opened * 1e6
            per_stream_cpu.setdefault(name, {})[n] = cpu_per
            per_hb = x["idle_cpu"] / x["heartbeats"] * 1e6 if x["heartbeats"] else None
            # Opening takes a while: streams already open heartbeat meanwhile (on average
            # half of them, for the whole opening time); `net` takes that out.
            net = (x["open_cpu"] - cpu_per / 1e6 * opened / 2 * x["seconds"]) / opened * 1e6
            lines.append(
                f"  {n:>6} open ({x['opened']} ok, failed {x['failed'] or 0}, in {x['seconds']:.1f} s): "
                f"RSS {x['rss'] / 2**20:6.1f} MiB = {(x['rss'] - base) / opened / 1024:5.1f} KiB/stream; "
                f"idle CPU {cpu_per:5.1f} us/stream/s, {x['heartbeats'] / x['window']:5.0f} heartbeats/s"
                f" ({_fmt(per_hb, '.1f')} us CPU each); opening {x['open_cpu'] / opened * 1e6:.0f} us "
                f"CPU/stream ({net:.0f} net of heartbeats); RSS after close "
                f"{x['rss_after_close'] / 2**20:.1f} MiB")
    on, off = per_stream_cpu.get("heartbeat_on", {}), per_stream_cpu.get("heartbeat_off", {})
    for n in on:
        if n in off:
            x, y = idle["heartbeat_on"], idle["heartbeat_off"]
            rss = (x[n]["rss"] - x["rss_base"]) - (y[n]["rss"] - y["rss_base"])
            lines.append(f"  heartbeat overhead at {n} idle streams (every {HEARTBEAT_SECONDS:g} s): "
                         f"{on[n] - off[n]:+.1f} us CPU/stream/s, RSS {rss / 2**20:+.1f} MiB")
    return lines


def extra_lines(r: dict[str, Any]) -> list[str]:
    lines = []
    loop = r.get("asyncio_loop")
    if loop:
        uv_t, uv_c = r["ttfb"], r["chunks"]
        lines.append("gateway event loop, uvloop vs asyncio: " + "; ".join([
            *(f"TTFB p50 {c} str. {uv_t[c]['gateway']['ttfb_ms']['p50']:.3f} vs "
              f"{loop['ttfb' + c]['ttfb_ms']['p50']:.3f} ms" for c in ("1", "50") if c in uv_t),
            *(f"chunks/s {c} str. {uv_c[c]['gateway']['tokens_per_second']:,.0f} vs "
              f"{loop['chunks' + c]['tokens_per_second']:,.0f} (gateway CPU s/1k chunks "
              f"{uv_c[c]['gateway']['cpu']['gateway'] / uv_c[c]['gateway']['tokens'] * 1000:.4f} vs "
              f"{loop['chunks' + c]['cpu']['gateway'] / loop['chunks' + c]['tokens'] * 1000:.4f})"
              for c in ("1", "50") if c in uv_c)]))
    adm = r.get("admission", {})
    if "missing" in adm:
        lines.append(f"admission: {adm['missing']}")
    for backend in ("memory", "redis"):
        a = adm.get(backend)
        if a and "skipped" not in a:
            trips = (f", round trips admit {a['round_trips_per_admit']:.2f}, admit+settle "
                     f"{a['round_trips_per_admission']:.2f}" if "round_trips_per_admit" in a else "")
            lines.append(f"admission, {backend}: admit {a['admit_us']:.1f} us, admit+settle "
                         f"{a['admit_settle_us']:.1f} us (n={a['n']}){trips}")
        elif a:
            lines.append(f"admission, {backend}: skipped ({a['skipped']})")
    if "gateway_memory" in adm and "gateway_redis" in adm:
        m, rd = adm["gateway_memory"]["ttfb_ms"]["p50"], adm["gateway_redis"]["ttfb_ms"]["p50"]
        lines.append(f"  gateway TTFB p50 at 1 stream: memory backend {m:.3f} ms, Redis backend "
                     f"{rd:.3f} ms ({rd - m:+.3f} ms)")
    return lines


def targets(r: dict[str, Any]) -> list[str]:
    checks: list[tuple[str, bool | None, str]] = []
    t, c = r.get("ttfb", {}), r.get("chunks", {})
    if "1" in t:
        added = t["1"]["gateway"]["ttfb_ms"]["p50"] - t["1"]["direct"]["ttfb_ms"]["p50"]
        checks.append(("added TTFB p50 at 1 stream <= 0.5 ms", added <= 0.5, f"{added:+.3f} ms"))
    for label, how in (("50", "unpaced, CPU-bound"), (PACED, "paced at 50 tokens/s")):
        if label in t:
            ratio = t[label]["gateway"]["ttfb_ms"]["p50"] / t[label]["direct"]["ttfb_ms"]["p50"]
            checks.append((f"TTFB p50 at 50 streams <= 1.5x direct ({how})", ratio <= 1.5,
                           f"{ratio:.2f}x"))
    for n, floor in (("1", 0.7), ("50", 0.8)):
        if n in c:
            ratio = c[n]["gateway"]["tokens_per_second"] / c[n]["direct"]["tokens_per_second"]
            checks.append((f"chunks/s at {n} streams >= {floor}x direct", ratio >= floor, f"{ratio:.2f}x"))
    stall = r.get("stall", {}).get("gateway")
    if stall:
        ok = stall["ok"] == stall["requests"] and stall["max_gap_ms"] < STALL_SECONDS * 1000
        checks.append((f"{stall['requests']} concurrent streams with no stall", ok,
                       f"{stall['ok']}/{stall['requests']} ok, max gap {stall['max_gap_ms']:.0f} ms"))
    on = r.get("idle", {}).get("heartbeat_on", {})
    big = max((int(n) for n in on if n.isdigit() and "rss" in on[n]), default=0)
    if big:
        x = on[str(big)]
        per = (x["rss"] - on["rss_base"]) / max(1, x["opened"])
        at_10k = on["rss_base"] + per * 10_000
        checks.append(("10,000 idle streams < 1 GiB RSS", at_10k < 2**30,
                       f"{x['rss'] / 2**20:.0f} MiB at {x['opened']} streams, "
                       f"{at_10k / 2**20:.0f} MiB at 10,000 (linear)"))
        small = on.get("1000", {})
        if big > 1000 and "idle_cpu" in small:
            a = small["idle_cpu"] / small["window"] / max(1, small["opened"])
            b = x["idle_cpu"] / x["window"] / max(1, x["opened"])
            checks.append((f"per-stream idle CPU grows < 20% from 1,000 to {big:,} streams",
                           b <= a * 1.2, f"{(b / a - 1) * 100 if a else 0:+.0f}%"))
    lines = ["targets:"]
    for name, ok, value in checks:
        lines.append(f"  [{'met ' if ok else 'MISS'}] {name}: {value}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--json-out", help="also write every raw figure to this JSON file")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        if args.client:
            runner.run(client_main())
            return 0
        return runner.run(side_by_side(args.quick, args.json_out))


if __name__ == "__main__":
    sys.exit(main())
