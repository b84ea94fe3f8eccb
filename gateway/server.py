"""Serving: the event loop choice, the listening site, signals, and drain.

Drain (SIGTERM/SIGINT): `/readyz` and new requests get 503 at once; requests in flight run
on for up to `drain_seconds`; then every stream is told to stop (it ends with one error
event at its next wait, see `relay.loop.Alarm.stop`), the rest get a few seconds more, and
what is left is cancelled when the runner closes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from . import tracing
from .app import build_app
from .config import Config
from .connections import connection_cap, guarded_runner, raise_fd_limit
from .reload import reload_config
from .state import METRICS, RUNTIME, SUPERVISOR_PID, TRACER

#: after drain_seconds and the stop, how long stopped streams get to write their error event
STOP_GRACE_SECONDS = 5.0


class PortInUse(OSError):
    """The listening port is taken: said in one line that names the port and the way out."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use (another gateway "
                         f"or program listens there): stop it, or pick a free port with --port N "
                         f"(or server.port in the config)")
        self.host, self.port = host, port

    def __str__(self) -> str:
        return str(self.strerror)


def run(main: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
    """Run `main` on uvloop (`auto` when installed, or `uvloop`) or asyncio's own loop."""
    factory = None
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise OSError("uvloop is not installed (pip install 'llm-stream-gateway[uvloop]')") from None
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


async def serve(
    config: Config, logger: FilteringBoundLogger, banner: Callable[[str], None] | None = None,
    *, demo_key: str | None = None, config_path: str | None = None, reuse_port: bool = False,
    announce: bool = True, supervisor: int | None = None, worker: int = 0,
) -> None:
    """Run until SIGTERM/SIGINT, then drain and exit clean; SIGHUP reloads `config_path`. A
    worker of several shares the port (`reuse_port`); only the first announces `started`."""
    app = build_app(config, logger, demo_key=demo_key, config_path=config_path, worker=worker)
    if supervisor is not None:
        app[SUPERVISOR_PID] = supervisor
    if (tracer := tracing.from_env(os.environ)) is not None:  # OTEL_* env, with the otel extra
        app[TRACER] = tracer
        app.on_cleanup.append(lambda _: asyncio.to_thread(tracer.shutdown))
    # Drain below waits for requests itself; what is left after it is cancelled at once. The
    # runner bounds every client connection (header/body/keep-alive timeouts, the cap).
    fds, _ = raise_fd_limit()
    runner = guarded_runner(app, config, app[METRICS], logger, handler_cancellation=True,
                            access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, backlog=4096,
                       reuse_port=reuse_port or None)
    try:
        await site.start()
    except BaseException as exc:
        await runner.cleanup()  # closes the client session and the limiter
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise PortInUse(config.server.host, config.server.port) from None
        raise
    url = site_url(runner, config.server.host)
    logger.info("started" if announce else "worker_started", url=url,
                upstreams=[u.name for u in config.upstreams], tenants=len(config.tenants),
                ratelimit_backend=config.ratelimit.backend,
                loop=type(asyncio.get_running_loop()).__module__, workers=config.server.workers,
                fd_limit=fds, max_connections=connection_cap(config))
    if banner is not None:
        banner(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_config, app)  # the outcome is logged
    await stop.wait()
    await drain(app, config.server.drain_seconds, logger)
    await runner.cleanup()
    logger.info("stopped")


async def drain(app: web.Application, seconds: float, logger: FilteringBoundLogger) -> None:
    runtime = app[RUNTIME]
    runtime.draining = True
    logger.info("drain_started", in_flight=runtime.in_flight, drain_seconds=seconds)
    try:
        await asyncio.wait_for(runtime.idle.wait(), seconds)
    except TimeoutError:
        stopped = runtime.stop_streams("the gateway is shutting down")
        logger.warning("drain_timeout", requests_stopped=runtime.in_flight, streams_stopped=stopped)
        try:
            await asyncio.wait_for(runtime.idle.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            pass


def site_url(runner: web.AppRunner, host: str) -> str:
    addresses = runner.addresses
    port = addresses[0][1] if addresses else 0
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}"
