"""The command line: `serve`, `mock-upstream`, `bench`, `hash-key`, `check-config`, and `keys`
and `spend` against a running gateway (`admin_cli.py`) (also `python -m gateway`).

Thin: parse arguments -> `Config` -> run. A bad config is one log line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from structlog.typing import FilteringBoundLogger

from . import __version__
from .admin_cli import add_parsers as add_admin_parsers
from .auth import hash_key
from .config import Config, load_config
from .config.env import FLAGS_ENV, flag_variable
from .demo import serve_demo
from .errors import ConfigError
from .logs import make_logger, route_library_logs
from .safety import unsafe_to_serve
from .server import PortInUse, run, serve
from .store.base import StoreUnavailable
from .store.runtime import probe_store
from .workers import serve_workers


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
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    serve.add_argument("--demo", action="store_true",
                       help="run with the built-in mock upstream and a demo key")
    serve.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                       help="event loop: uvloop when installed (auto, the default on Linux), or force one")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (overrides server.workers)")
    serve.set_defaults(run=_serve)

    mock = sub.add_parser("mock-upstream", help="run the built-in fake LLM provider alone")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9000)
    mock.add_argument("--first-byte-delay", type=float, default=0.0, metavar="SECONDS")
    mock.add_argument("--tokens-per-second", type=float, default=0.0, help="0 = unpaced")
    mock.add_argument("--words", type=int, default=20, help="answer length in words")
    mock.add_argument("--api-key", default=None, help="require this upstream key")
    mock.add_argument("--models", default="mock-1", metavar="A,B,...",
                      help="what its GET /v1/models lists (default: %(default)s)")
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
    hashing.add_argument("--new", metavar="PATH",
                         help="make a new random key, write it to PATH (created 0600, never "
                              "overwritten; keep it outside the repo) and print its hash")
    hashing.set_defaults(run=_hash_key)

    check = sub.add_parser("check-config", help="validate a config (with its env) and print what it yields")
    check.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    check.set_defaults(run=_check_config)
    add_admin_parsers(sub)  # keys create|list|revoke, spend: a running gateway's admin API
    return parser


def _check_config(args: argparse.Namespace) -> int:
    from .check import describe, price_warnings
    from .prices import builtin_prices
    from .spend import PriceTable

    path = args.config or os.environ.get("GATEWAY_CONFIG")
    try:
        config = load_config(path, os.environ, warn=lambda m: print(f"warning: {m}", file=sys.stderr)) \
            if path else _no_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    prices = PriceTable.from_config(config.prices, builtin_prices())
    print(f"{path}: ok\n\n{describe(config, prices)}")
    for warning in price_warnings(config, prices):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _hash_key(args: argparse.Namespace) -> int:
    if args.new:
        return _new_key_file(args.new)
    key = args.key
    if key is None:
        key = getpass.getpass("key: ") if sys.stdin.isatty() else sys.stdin.readline()
        key = key.rstrip("\r\n")
    if not key:
        print("llm-gateway hash-key: empty key", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def _new_key_file(path: str) -> int:
    """A fresh key only its owner can read: O_EXCL so an existing file is never replaced, and
    mode 0600 from the start (no moment when it is readable by others)."""
    key = "gw-" + secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"llm-gateway hash-key: {path} exists: not overwritten", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"llm-gateway hash-key: {path}: {exc.strerror}", file=sys.stderr)
        return 2
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(key + "\n")
    print(hash_key(key))
    return 0


def _mock_upstream(args: argparse.Namespace) -> int:
    from .mock import MockSettings, run_mock

    settings = MockSettings(
        first_byte_delay=args.first_byte_delay, tokens_per_second=args.tokens_per_second,
        words=args.words, api_key=args.api_key,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()))
    run_mock(args.host, args.port, settings)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args)


def _serve(args: argparse.Namespace) -> int:
    logger = make_logger()
    route_library_logs()
    path = args.config or os.environ.get("GATEWAY_CONFIG")
    flags = []
    for flag in ("host", "port", "workers"):
        value = getattr(args, flag)
        if value is not None:  # a flag wins over the file and the env, as an override does,
            # and over a reload's too (it reads the process's env), and the workers'
            os.environ[flag_variable(f"--{flag}")] = str(value) if flag != "host" else f'"{value}"'
            flags.append(f"--{flag}")
    if flags:  # a problem with these values names the flag
        os.environ[FLAGS_ENV] = ",".join(flags)
    else:
        os.environ.pop(FLAGS_ENV, None)
    env = dict(os.environ)
    try:
        if args.demo:
            runner_factory: Callable[[], Coroutine[Any, Any, None]] = lambda: serve_demo(  # noqa: E731
                path, env, logger)
        else:
            config = load_config(path, env, warn=_warner(logger)) if path else _no_config()
            if (problem := unsafe_to_serve(config)) is not None:
                raise ConfigError(problem)
            asyncio.run(probe_store(config, path))  # unreachable: one line, exit 2 (not per worker)
            if config.server.workers > 1:
                return serve_workers(config, logger, args.loop, config_path=path)
            runner_factory = lambda: serve(config, logger, config_path=path)  # noqa: E731
    except ConfigError as exc:
        logger.error("config_error", error=str(exc))
        return 2
    except StoreUnavailable as exc:
        logger.error("store_unavailable", error=str(exc))
        return 2
    try:
        run(runner_factory, args.loop)
    except ConfigError as exc:  # demo: its config is built once the mock has a port
        logger.error("config_error", error=str(exc))
        return 2
    except StoreUnavailable as exc:  # gone between the probe and the start
        logger.error("store_unavailable", error=str(exc))
        return 2
    except PortInUse as exc:  # a plain line a person reads first, then the JSON one
        print(f"llm-gateway: {exc}", file=sys.stderr, flush=True)
        logger.error("startup_failed", error=str(exc), port=exc.port)
        return 1
    except Exception as exc:  # one line, not a traceback
        logger.error("startup_failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def _warner(logger: FilteringBoundLogger) -> Callable[[str], None]:
    return lambda message: logger.warning("config_warning", warning=message)


def _no_config() -> Config:
    raise ConfigError("<none>: no config file: pass --config PATH, set GATEWAY_CONFIG, or use --demo")
