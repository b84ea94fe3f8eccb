"""The aiohttp floor: a bare aiohttp reverse proxy with nothing of the gateway in it, so the
side-by-side run can measure what aiohttp's server and client cost per request, per chunk
and per connection, next to the gateway and nginx in the same rounds.

    python -m bench.floor --port P --upstream http://127.0.0.1:M [--loop uvloop|asyncio|auto]

`POST /v1/chat/completions`: the client's body goes to `{upstream}/v1/chat/completions` with
an Authorization header built once (and the client's X-Request-ID, when it sent one); a
stream (`"stream": true`) is relayed chunk by chunk as read (`iter_any`), anything else is
read whole and returned with its status and content type.
`GET /healthz` answers 200. No auth, limits, logs, metrics, heartbeats, retries: it is the
floor any gateway on aiohttp stands on, not a product. It imports nothing from `gateway`.

The choices that a correct gateway also has to make are made as the gateway makes them, so
that they count in the floor: the same event loop (uvloop unless told otherwise), handler
cancellation on (a client that goes away closes the upstream at once), no access log, an
upstream session with no connection limit, no cookie jar and no total timeout, identity
encoding (bytes pass through as they came).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
HEADERS = web.AppKey("headers", dict[str, str])
#: The env var holding the key sent upstream (the one the bench gives the gateway too).
KEY_ENV = "BENCH_UPSTREAM_KEY"


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
    stream = isinstance(payload, dict) and payload.get("stream") is True
    app = request.app
    headers = app[HEADERS]
    if (request_id := request.headers.get("X-Request-ID")) is not None:  # as nginx passes it on
        headers = {**headers, "X-Request-ID": request_id}
    async with app[SESSION].post(app[UPSTREAM], data=body, headers=headers) as upstream:
        if not stream or upstream.status != 200:
            whole = await upstream.read()
            return web.Response(body=whole, status=upstream.status, headers={
                "Content-Type": upstream.headers.get("Content-Type", "application/json")})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(upstream: str, key: str | None) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/") + "/v1/chat/completions"
    app[HEADERS] = {"Content-Type": "application/json", "Accept-Encoding": "identity",
                    **({"Authorization": f"Bearer {key}"} if key else {})}

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            skip_auto_headers=("User-Agent",))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(port: int, upstream: str, key: str | None) -> None:
    """Until SIGTERM or SIGINT; then the runner closes what is still open."""
    runner = web.AppRunner(build_app(upstream, key), access_log=None, handler_cancellation=True,
                           shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """As the gateway's `server.run`: uvloop for `uvloop` (it must be installed) and for
    `auto` when installed; asyncio's own loop otherwise."""
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if loop == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8001")
    parser.add_argument("--loop", choices=("uvloop", "asyncio", "auto"), default="uvloop")
    args = parser.parse_args()
    # Idle-stream rows hold ~10,000 streams, two fds each (the gateway raises its limit too).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(args.port, args.upstream, os.environ.get(KEY_ENV)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
