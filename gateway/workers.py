"""`workers = N`: N processes serving one port (SO_REUSEPORT), one core each.

Rules:
- The parent only supervises. SIGHUP is passed on (each worker reloads). It makes a fresh
  directory for prometheus-client's multiprocess mode (so `/metrics` on any worker reports
  the sum over all workers), starts the workers with `PROMETHEUS_MULTIPROC_DIR` set (the
  library reads it at import, so the workers are spawned, not forked), forwards
  SIGTERM/SIGINT to them, waits for each to drain, and removes the directory.
- Limits stay exact across workers only through Redis: the config refuses `workers > 1`
  with the memory backend. The stream limits (`max_concurrent_streams`, `max_queue`) are
  split between the workers exactly instead (`admission/share.py`): worker i holds its share.
- A worker that dies is reported; the others keep serving, and the parent exits when all
  have stopped (the process manager restarts the whole set).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from .config import Config

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _worker(config: Config, loop: str, index: int, config_path: str | None) -> None:
    """A worker's whole life: its own logger and event loop, `serve` with SO_REUSEPORT."""
    # A SIGHUP passed on before `serve` has its handler must not end the worker (the default).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from .logs import make_logger, route_library_logs
    from .server import PortInUse, run, serve

    logger = make_logger().bind(worker=index)
    route_library_logs()
    supervisor = os.getppid()
    try:
        run(lambda: serve(config, logger, config_path=config_path, reuse_port=True,
                          announce=index == 0, supervisor=supervisor, worker=index), loop)
    except PortInUse as exc:  # one plain line (from the first worker), not a traceback each
        if index == 0:
            print(f"llm-gateway: {exc}", file=sys.stderr, flush=True)
        logger.error("startup_failed", error=str(exc), port=exc.port)
        sys.exit(1)


def serve_workers(
    config: Config, logger: FilteringBoundLogger, loop: str, *, config_path: str | None = None,
) -> int:
    """Run `config.server.workers` workers until a signal, then drain them all; SIGHUP is
    passed on, so every worker reloads `config_path`."""
    count = config.server.workers
    metrics_dir = Path(tempfile.mkdtemp(prefix="llm-gateway-metrics-"))
    os.environ[MULTIPROC_ENV] = str(metrics_dir)  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        for index in range(count):
            worker = context.Process(target=_worker, args=(config, loop, index, config_path),
                                     name=f"worker-{index}")
            worker.start()
            procs.append(worker)
        logger.info("workers_started", workers=count, pids=[p.pid for p in procs],
                    metrics_dir=str(metrics_dir))
        failed = 0
        alive: list[BaseProcess] = list(procs)
        while alive:
            for proc in alive[:]:
                proc.join(timeout=0.2)
                if proc.exitcode is not None:
                    alive.remove(proc)
                    _mark_dead(proc.pid)
                    if proc.exitcode != 0:
                        failed += 1
                        logger.error("worker_exited", pid=proc.pid, exitcode=proc.exitcode,
                                     stopping=stopping)
            time.sleep(0)  # join's timeout paces the loop
        logger.info("workers_stopped", workers=count, failed=failed)
        return 1 if failed and not stopping else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _mark_dead(pid: int | None) -> None:
    if pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
