"""A chunked body that breaks its framing after a valid first chunk: 400 in the route's shape at
once and the connection closed (gateway/connections.py), through the real listening socket with
the default client timeouts (every read below is bounded well under them)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.state import RUNTIME
from tests._proc import eventually
from tests.conftest import CLIENT_KEY
from tests.test_client_timeouts import Serve, Served, read_until_closed
from tests.test_client_timeouts import serve as serve  # the fixture

FIRST_CHUNK = b'2\r\n{"\r\n'
#: what follows a valid first chunk
BROKEN = {
    "not_a_chunk_size": b"zz\r\n",
    "data_without_its_crlf": b"3\r\nabcXY",
    "huge_chunk_size": b"ffffffffffffffffffffffff\r\n",
}


def head(path: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
            "anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()


async def open_body(served: Served, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose request head and first chunk are in: its handler runs and waits for
    the rest of the body (what follows arrives in a later read, as from a real client)."""
    before = served.app[RUNTIME].in_flight
    reader, writer = await served.connect()
    writer.write(head(path) + FIRST_CHUNK)
    await writer.drain()
    await eventually(lambda: served.app[RUNTIME].in_flight > before, what="the handler runs")
    return reader, writer


def split(answer: bytes) -> tuple[bytes, object]:
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return status_line, orjson.loads(body)


@pytest.mark.parametrize("broken", list(BROKEN))
async def test_a_broken_chunk_after_a_valid_one_is_a_400_and_the_connection_closes(
        serve: Serve, broken: str) -> None:
    served = await serve()  # the default header (10 s), body (30 s) and keep-alive (75 s) clocks
    reader, writer = await open_body(served, "/v1/chat/completions")
    writer.write(BROKEN[broken])
    await writer.drain()
    status, body = split(await read_until_closed(reader))  # EOF: the gateway closed it
    assert status.startswith(b"HTTP/1.1 400 ")
    assert body == {"error": {"message": "the request body's chunked framing is broken",
                              "type": "invalid_request_error", "code": "http_error"}}
    assert served.closed("broken_body") == 1.0
    assert served.closed("body_timeout") == 0.0
    lines = [line for line in served.log_lines() if line.get("route") == "chat_completions"]
    assert [line["status"] for line in lines] == [400]
    writer.close()


async def test_the_400_takes_the_anthropic_shape_on_messages(serve: Serve) -> None:
    served = await serve()
    reader, writer = await open_body(served, "/v1/messages")
    writer.write(BROKEN["not_a_chunk_size"])
    await writer.drain()
    status, body = split(await read_until_closed(reader))
    assert status.startswith(b"HTTP/1.1 400 ")
    assert body == {"type": "error", "error": {"type": "invalid_request_error",
                                               "message": "the request body's chunked framing is broken"}}
    writer.close()


async def test_a_broken_chunk_in_the_head_s_own_packet_is_a_400_too(serve: Serve) -> None:
    """The parser fails before the request is queued: aiohttp's own error answer, in the shape."""
    served = await serve()
    reader, writer = await served.connect()
    writer.write(head("/v1/chat/completions") + FIRST_CHUNK + BROKEN["not_a_chunk_size"])
    await writer.drain()
    status, body = split(await read_until_closed(reader))
    assert status.startswith(b"HTTP/1.0 400 ")  # aiohttp's error answer has no request version
    assert body == {"error": {"message": "the request could not be parsed (BadHttpMessage)",
                              "type": "invalid_request_error", "code": "http_error"}}
    writer.close()


async def test_fifty_broken_bodies_do_not_starve_healthz(serve: Serve) -> None:
    """They fill `max_connections = 50`; each is answered and closed, so a new client is served."""
    served = await serve(max_connections=50)
    connections = [await open_body(served, "/v1/chat/completions") for _ in range(50)]
    for index, (_, writer) in enumerate(connections):
        writer.write(BROKEN[list(BROKEN)[index % len(BROKEN)]])
    answers = await asyncio.gather(*(read_until_closed(reader) for reader, _ in connections))
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"HTTP/1.1 400 Bad Request"] * 50
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await read_until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert served.closed("broken_body") == 50.0
    assert served.closed("max_connections") == 0.0
    for _, each in [*connections, (reader, writer)]:
        each.close()
