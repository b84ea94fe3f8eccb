"""The processes a bench run starts (gateway, the aiohttp floor, nginx, redis-server), their
ready checks, and stopping each one by its own PID. One `free_port` for the whole bench.

Binaries are found with `shutil.which` (also in the sbin directories, where Debian puts nginx).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import aiohttp

from bench.config import REPO, UPSTREAM_KEY, UPSTREAM_KEY_ENV, gateway_config, nginx_conf, toml_text
from bench.proc_stats import children

_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    """`name` on $PATH, else in the sbin directories; None when not installed."""
    return shutil.which(name) or shutil.which(name, path=_SBIN)


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
        """SIGTERM, then SIGKILL after `timeout` seconds; always reaped."""
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
        self.logs = []


async def wait_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Until `url` answers below 500 (bounded); fails at once if `proc` exits."""
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


async def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Until 127.0.0.1:`port` accepts a connection (bounded); fails at once if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} did not accept within {timeout} s")


def gateway_argv(config_path: Path, *extra: str) -> list[str]:
    """THE command that starts a gateway process (the bench's and the tests' alike)."""
    return [sys.executable, "-m", "gateway", "serve", "--config", str(config_path), *extra]


def gateway_env(keys: Mapping[str, str] | None = None) -> dict[str, str]:
    """THE environment a gateway process gets: this one minus GATEWAY_* overrides (a config
    says what it means), the repo on the path, and the upstream keys (`keys`; by default the
    bench's one)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
            "PYTHONPATH": str(REPO),
            **(keys if keys is not None else {UPSTREAM_KEY_ENV: UPSTREAM_KEY})}


class Gateway:
    """`python -m gateway serve --config FILE` on a free port, configured by `gateway_config`."""

    def __init__(self, procs: Procs, name: str, mock_url: str, *, loop: str = "auto",
                 **config: Any) -> None:
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = procs.workdir / f"{name}.toml"
        self.config_path.write_text(toml_text(gateway_config(self.port, mock_url, **config)))
        self.proc = procs.start(name, gateway_argv(self.config_path, "--loop", loop), gateway_env())
        self.pid = self.proc.pid

    async def ready(self, timeout: float = 20) -> Gateway:
        await wait_ok(self.url + "/healthz", self.proc, timeout)
        return self

    def stop(self) -> None:
        self.procs.stop(self.proc)

    async def metric(self, name: str) -> float:
        """The value of an unlabelled metric (or the sum over a labelled one's series)."""
        total, found = 0.0, False
        async with aiohttp.ClientSession() as session, session.get(
                self.url + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith((name + " ", name + "{")):
                    total += float(line.rsplit(None, 1)[1])
                    found = True
        if not found:
            raise LookupError(f"{name} not in {self.url}/metrics")
        return total


class Floor:
    """The aiohttp floor (`python -m bench.floor`, a bare aiohttp proxy) in front of `upstream`,
    on the gateway's event loop choice, with the environment the gateway gets."""

    def __init__(self, procs: Procs, name: str, upstream: str, *, loop: str = "auto") -> None:
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = procs.start(name, [sys.executable, "-m", "bench.floor", "--port", str(self.port),
                                       "--upstream", upstream, "--loop", loop], gateway_env())
        self.pid = self.proc.pid

    async def ready(self, timeout: float = 20) -> Floor:
        await wait_ok(self.url + "/healthz", self.proc, timeout)
        return self

    def stop(self) -> None:
        self.procs.stop(self.proc)


class Nginx:
    """nginx in front of `upstream_port` (the gateway, or the mock for the pure-proxy row)."""

    def __init__(self, procs: Procs, name: str, binary: str, upstream_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prefix = procs.workdir / name
        prefix.mkdir(exist_ok=True)
        conf, self.config_kind = nginx_conf(self.port, upstream_port)
        (prefix / "nginx.conf").write_text(conf)
        self.procs = procs
        self.proc = procs.start(name, [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                       "-e", "stderr", "-g", "daemon off;"], stdout=subprocess.DEVNULL)
        self.pids: list[int] = [self.proc.pid]

    async def ready(self, health_path: str = "/healthz") -> Nginx:
        await wait_ok(self.url + health_path, self.proc)
        self.pids = [self.proc.pid, *children(self.proc.pid)]  # master, then its workers
        return self

    def stop(self) -> None:
        self.procs.stop(self.proc)


def nginx_version(binary: str | None) -> str:
    if binary is None:
        return "not installed"
    return subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stderr.strip()


async def start_redis(procs: Procs, name: str, port: int | None = None
                      ) -> tuple[subprocess.Popen[bytes], int] | None:
    """A private redis-server (no persistence) on loopback; None when not installed."""
    binary = find_binary("redis-server")
    if binary is None:
        return None
    port = port or free_port()
    proc = procs.start(name, [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"])
    await wait_port(port, proc)
    return proc, port
