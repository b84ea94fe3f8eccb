"""How the mock's non-SSE answers leave: JSON (padded by `big=`, gzipped by `gzip`), errors
with their Retry-After, a proxy's HTML page, and the endless `drip=` body.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import math
import time
import zlib
from typing import Any

import orjson
from aiohttp import web

from .faults import Faults
from .shapes import Shape
from .state import StreamRecord

# What nginx says when its upstream is gone; served with a 200, as some proxies do.
HTML_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_PAD = b"x" * 65536


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def retry_after(faults: Faults, now: float) -> str | None:
    """The Retry-After value: seconds, or with `retry_after_date` an HTTP date (1 s by default)."""
    if faults.retry_after_date:
        return email.utils.formatdate(math.ceil(now + (faults.retry_after or 1.0)), usegmt=True)
    return None if faults.retry_after is None else f"{faults.retry_after:g}"


def error_response(shape: Shape, status: int, message: str, faults: Faults | None = None) -> web.Response:
    headers = {}
    if faults is not None and (value := retry_after(faults, time.time())) is not None:
        headers["Retry-After"] = value
    return json_response(shape.error(status, message), status, headers)


def echoed_keys(request: web.Request) -> str:
    """The credentials the mock received, verbatim: what a careless upstream puts in an error."""
    sent = [
        f"{name}: {request.headers[name]}"
        for name in ("Authorization", "x-api-key")
        if name in request.headers
    ]
    return "Incorrect API key provided: " + ("; ".join(sent) or "(none)")


def html_page() -> web.Response:
    return web.Response(body=HTML_PAGE, content_type="text/html")


async def send_json(request: web.Request, payload: dict[str, Any], faults: Faults) -> web.StreamResponse:
    """A non-stream answer; `big=N` pads it with a `mock_padding` string to at least N bytes and
    `gzip` compresses it on the fly, so neither needs the padded body in memory."""
    if faults.big is None and not faults.gzip:
        return json_response(payload)
    head, pad, tail = orjson.dumps(payload), 0, b""
    if faults.big is not None:
        padded = orjson.dumps({**payload, "mock_padding": ""})  # ends with `"mock_padding":""}`
        head, tail = padded[:-2], padded[-2:]
        pad = max(0, faults.big - len(padded))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    packer = zlib.compressobj(6, zlib.DEFLATED, 31) if faults.gzip else None  # wbits 31: gzip framing
    if packer is not None:
        resp.headers["Content-Encoding"] = "gzip"
    else:
        resp.content_length = len(head) + pad + len(tail)
    await resp.prepare(request)

    async def put(data: bytes) -> None:
        if packer is not None:
            data = packer.compress(data)
        if data:
            await resp.write(data)

    await put(head)
    while pad:
        await put(_PAD[: min(pad, len(_PAD))])
        pad -= min(pad, len(_PAD))
    await put(tail)
    if packer is not None:
        await resp.write(packer.flush())
    await resp.write_eof()
    return resp


async def drip(
    request: web.Request, record: StreamRecord, interval: float, stream: bool
) -> web.StreamResponse:
    """Headers, then one byte every `interval` seconds, never a newline, until the client leaves."""
    content_type = "text/event-stream" if stream else "application/json"
    resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    await resp.prepare(request)
    opening = b'data: {"drip":"' if stream else b'{"drip":"'
    try:
        for byte in itertools.chain(opening, itertools.repeat(ord("x"))):
            await resp.write(bytes([byte]))
            record.chunks_sent += 1  # bytes, here
            await asyncio.sleep(interval)
    except ConnectionResetError:  # the peer went away mid-write
        record.client_closed = True
    return resp
