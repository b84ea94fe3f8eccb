"""The command line: `serve`, `mock-upstream`, `bench`, `hash-key` (also `python -m gateway`).

Thin: parse arguments -> `Config` -> run. A bad config is one log line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from .app import build_app
from .auth import hash_key
from .config import Config, config_from_dict, load_config
from .errors import ConfigError
from .logs import make_logger, route_library_logs
from .state import RUNTIME

DEMO_KEY = "gw-demo-key"
DEMO_UPSTREAM_KEY_ENV = "GATEWAY_DEMO_UPSTREAM_KEY"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-gateway", description="LLM Stream Gateway: a zero-buffering SSE gateway.")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    serve.add_argument("--demo", action="store_true",
                       help="run with the built-in mock upstream and a demo key")
    serve.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                       help="event loop: uvloop when installed (auto), or force one")
    serve.set_defaults(run=_serve)

    mock = sub.add_parser("mock-upstream", help="run the built-in fake LLM provider alone")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9000)
    mock.add_argument("--first-byte-delay", type=float, default=0.0, metavar="SECONDS")
    mock.add_argument("--tokens-per-second", type=float, default=0.0, help="0 = unpaced")
    mock.add_argument("--words", type=int, default=20, help="answer length in words")
    mock.add_argument("--api-key", default=None, help="require this upstream key")
    mock.set_defaults(run=_mock_upstream)

    bench = sub.add_parser(
        "bench", help="stream N requests at concurrency C and report",
        description="Stream chat completions and report TTFB, total time and tokens/s per "
                    "request (p50/p90/p99), errors by status with the first message of each, "
                    "and requests/s. Exit 1 when any request failed.")
    bench.add_argument("--url", required=True,
                       help="base URL of the gateway or any OpenAI-compatible server, with or "
                            "without /v1 (e.g. http://127.0.0.1:8080)")
    bench.add_argument("--key", required=True,
                       help="API key sent as 'Authorization: Bearer KEY' (a gateway tenant key)")
    bench.add_argument("--model", default="mock-1",
                       help="model name to request (default: %(default)s, the mock's)")
    bench.add_argument("--concurrency", type=int, default=10,
                       help="requests in flight at once (default: %(default)s)")
    bench.add_argument("--requests", type=int, default=100,
                       help="requests to send in all (default: %(default)s)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=_bench)

    hashing = sub.add_parser("hash-key", help="print the sha256 to put in key_sha256")
    hashing.add_argument("key", nargs="?", help="the key (default: read from stdin)")
    hashing.set_defaults(run=_hash_key)
    return parser


def _hash_key(args: argparse.Namespace) -> int:
    key = args.key
    if key is None:
        key = getpass.getpass("key: ") if sys.stdin.isatty() else sys.stdin.readline()
        key = key.rstrip("\r\n")
    if not key:
        print("llm-gateway hash-key: empty key", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def _mock_upstream(args: argparse.Namespace) -> int:
    from .mock import MockSettings, run_mock

    settings = MockSettings(
        first_byte_delay=args.first_byte_delay, tokens_per_second=args.tokens_per_second,
        words=args.words, api_key=args.api_key)
    run_mock(args.host, args.port, settings)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args)


def _serve(args: argparse.Namespace) -> int:
    logger = make_logger()
    route_library_logs()
    path = args.config or os.environ.get("GATEWAY_CONFIG")
    env = dict(os.environ)
    try:
        if args.demo:
            runner_factory: Callable[[], Coroutine[Any, Any, None]] = lambda: _serve_demo(  # noqa: E731
                path, env, logger)
        else:
            config = load_config(path, env) if path else _no_config()
            runner_factory = lambda: serve(config, logger)  # noqa: E731
    except ConfigError as exc:
        logger.error("config_error", error=str(exc))
        return 2
    try:
        _run(runner_factory, args.loop)
    except ConfigError as exc:  # demo: its config is built once the mock has a port
        logger.error("config_error", error=str(exc))
        return 2
    except Exception as exc:  # e.g. the port is taken: one line, not a traceback
        logger.error("startup_failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def _no_config() -> Config:
    raise ConfigError("<none>: no config file: pass --config PATH, set GATEWAY_CONFIG, or use --demo")


def _run(main: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
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
    config: Config, logger: FilteringBoundLogger, banner: Callable[[str], None] | None = None
) -> None:
    """Run until SIGTERM/SIGINT, then drain: `/readyz` and new requests get 503 at once,
    requests in flight run on for up to `drain_seconds`, then streams end with an error
    event and the rest are cancelled; exit clean."""
    app = build_app(config, logger)
    # Drain below waits for requests itself; what is left after it is cancelled at once.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, backlog=4096)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()  # closes the client session and the limiter
        raise
    url = _site_url(runner, config.server.host)
    logger.info("started", url=url, upstreams=[u.name for u in config.upstreams],
                tenants=len(config.tenants), ratelimit_backend=config.ratelimit.backend,
                loop=type(asyncio.get_running_loop()).__module__)
    if banner is not None:
        banner(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    runtime = app[RUNTIME]
    runtime.draining = True
    logger.info("drain_started", in_flight=len(runtime.flights),
                drain_seconds=config.server.drain_seconds)
    try:
        await asyncio.wait_for(runtime.idle.wait(), config.server.drain_seconds)
    except TimeoutError:
        left = list(runtime.flights)
        for flight in left:  # streams end with an error event; the rest are cancelled below
            flight.stop("the gateway is shutting down")
        logger.warning("drain_timeout", requests_stopped=len(left))
        try:
            await asyncio.wait_for(runtime.idle.wait(), 5)
        except TimeoutError:
            pass
    await runner.cleanup()
    logger.info("stopped")


def _site_url(runner: web.AppRunner, host: str) -> str:
    addresses = runner.addresses
    port = addresses[0][1] if addresses else 0
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}"


async def _serve_demo(path: str | None, env: Mapping[str, str], logger: FilteringBoundLogger) -> None:
    from .mock import MockSettings, start_mock

    mock_runner, mock_url = await start_mock(
        settings=MockSettings(tokens_per_second=25, words=40, api_key="demo-upstream-key"))
    try:
        config = demo_config(path, {**env, DEMO_UPSTREAM_KEY_ENV: "demo-upstream-key"}, mock_url)

        def banner(url: str) -> None:
            body = '{"model":"mock-1","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'
            print(
                f"\nLLM Stream Gateway demo on {url} (mock upstream at {mock_url})\n"
                f"demo key: {DEMO_KEY}\n"
                f"chat page: {url}/\n"
                f"try:\n  curl -N {url}/v1/chat/completions "
                f"-H 'Authorization: Bearer {DEMO_KEY}' -H 'Content-Type: application/json' "
                f"-d '{body}'\n",
                flush=True,
            )

        await serve(config, logger, banner)
    finally:
        await mock_runner.cleanup()


def demo_config(path: str | None, env: Mapping[str, str], mock_url: str) -> Config:
    """Defaults (or the given file's server/limits/ratelimit sections), the mock as both an
    OpenAI and an Anthropic upstream (`mock-*` works on both routes, `gpt-*` on the OpenAI
    one, `claude-*` on the Anthropic one), and one demo tenant; the chat page on."""
    import tomllib
    from pathlib import Path

    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    server = {"host": "127.0.0.1", "ui": True, **raw.get("server", {})}
    raw = {
        "server": server,
        "limits": raw.get("limits", {}),
        "ratelimit": raw.get("ratelimit", {}),
        "upstreams": [
            {"name": "mock-openai", "dialect": "openai", "base_url": f"{mock_url}/v1",
             "api_key_env": DEMO_UPSTREAM_KEY_ENV, "models": ["mock-*", "gpt-*"]},
            {"name": "mock-anthropic", "dialect": "anthropic", "base_url": mock_url,
             "api_key_env": DEMO_UPSTREAM_KEY_ENV, "models": ["claude-*", "mock-*"]},
        ],
        "tenants": [{"name": "demo", "key_sha256": hash_key(DEMO_KEY), "models": ["*"]}],
    }
    return config_from_dict(raw, env, source=path or "<demo>")
