"""Bad input is a clear 4xx in the route's shape, never a 500, and an upstream's HTML page
is never relayed as a success."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import aiohttp
import orjson
import pytest

from tests.conftest import CLIENT_KEY, Gateway, GatewayFactory, Mock, Spawn, auth, chat_body


def _nested(depth: int) -> bytes:
    inner = b'"x"'
    for _ in range(depth):
        inner = b'{"a":' + inner + b"}"
    return inner


def _body_with_content(content: bytes) -> bytes:
    return b'{"model":"mock-1","stream":false,"messages":[{"role":"user","content":' + content + b"}]}"


@pytest.mark.parametrize("depth", [64, 300, 1023, 5000])
async def test_deeply_nested_json_is_accepted_to_64_and_never_a_5xx(gateway: Gateway, depth: int) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", data=_body_with_content(_nested(depth)),
        headers={**auth(), "Content-Type": "application/json"})
    if depth <= 64:
        assert response.status == 200
    else:
        assert response.status in (200, 400)  # never a 5xx
        if response.status == 400:
            assert (await response.json())["error"]["type"] == "invalid_request_error"


async def test_a_body_that_fails_to_decode_is_a_400_in_the_routes_shape(mock: Mock, spawned: Spawn) -> None:
    gateway = spawned(mock.url)  # the real server: its connection handler answers parse errors
    broken = zlib.compress(orjson.dumps(chat_body()))[:-6] + b"garbage"
    headers = {**auth(), "Content-Type": "application/json", "Content-Encoding": "deflate"}
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/chat/completions", "/v1/messages"):
            async with http.post(f"{gateway.url}{path}", data=broken, headers=headers) as response:
                assert response.status == 400
                body = await response.json()
            if path == "/v1/messages":
                assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            else:
                assert body["error"]["type"] == "invalid_request_error"
            assert "deflate data" in str(body)  # cut short, or not valid
    assert not mock.state.requests


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


BODY = orjson.dumps(chat_body(stream=False))


@pytest.mark.parametrize(("name", "data", "encoding", "status", "says"), [
    ("gzip", _gzip(BODY), "gzip", 200, None),
    ("two gzip members", _gzip(BODY[:20]) + _gzip(BODY[20:]), "gzip", 200, None),
    ("gzip, zero padding", _gzip(BODY) + b"\0" * 8, "gzip", 200, None),
    ("zlib deflate", zlib.compress(BODY), "deflate", 200, None),
    ("raw deflate", zlib.compress(BODY, wbits=-15), "deflate", 200, None),
    ("GZIP, any case", _gzip(BODY), "GZip", 200, None),
    ("x-gzip (gzip's old name)", _gzip(BODY), "x-gzip", 200, None),
    ("four gzip members", b"".join(_gzip(BODY[i:i + 20]) for i in range(0, 60, 20)) + _gzip(BODY[60:]),
     "gzip", 200, None),
    ("many empty gzip members", _gzip(BODY) + _gzip(b"") * 50_000, "gzip", 400, "gzip members"),
    ("gzip trailer cut by 1 byte", _gzip(BODY)[:-1], "gzip", 400, "cut short"),
    ("gzip trailer cut by 4 bytes", _gzip(BODY)[:-4], "gzip", 400, "cut short"),
    ("gzip trailer cut by 8 bytes", _gzip(BODY)[:-8], "gzip", 400, "cut short"),
    ("gzip, garbage after", _gzip(BODY) + b"garbage", "gzip", 400, "not valid gzip"),
    ("gzip, wrong checksum", _gzip(BODY)[:-8] + b"\0" * 8, "gzip", 400, "not valid gzip"),
    ("deflate, bytes after", zlib.compress(BODY) + b"x", "deflate", 400, "bytes after"),
    ("deflate cut short", zlib.compress(BODY)[:-3], "deflate", 400, "cut short"),
    ("not gzip at all", BODY, "gzip", 400, "not valid gzip"),
])
async def test_a_compressed_body_is_decoded_whole_or_refused(
    gateway: Gateway, mock: Mock, name: str, data: bytes, encoding: str, status: int, says: str | None,
) -> None:
    response = await gateway.client.post("/v1/chat/completions", data=data, headers={
        **auth(), "Content-Type": "application/json", "Content-Encoding": encoding})
    answer = await response.json()
    assert response.status == status, (name, answer)
    if says is None:
        assert mock.state.requests[-1].body == orjson.loads(BODY)  # the decoded body went upstream
    else:
        assert says in answer["error"]["message"] and answer["error"]["type"] == "invalid_request_error"
        assert not mock.state.requests


async def test_a_body_over_the_limit_once_decoded_is_a_413(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await start_gateway(server={"max_body_bytes": 4096})
    bomb = _gzip(b'{"model": "mock-1", "messages": [], "pad": "' + b" " * 1_000_000 + b'"}')
    assert len(bomb) < 4096
    response = await gateway.client.post("/v1/messages", data=bomb, headers={
        **auth(), "Content-Type": "application/json", "Content-Encoding": "gzip",
        "anthropic-version": "2023-06-01"})
    assert response.status == 413
    answer = await response.json()
    assert answer["type"] == "error" and "once decoded" in answer["error"]["message"]
    assert not mock.state.requests


@pytest.mark.parametrize("raw", [
    b'{"model":"mock-1","model":"mock-2","messages":[{"role":"user","content":"hi"}]}',
    b'{"model":"mock-1","messages":[{"role":"user","role":"system","content":"hi"}]}',
])
async def test_duplicate_keys_are_refused(gateway: Gateway, mock: Mock, raw: bytes) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", data=raw, headers={**auth(), "Content-Type": "application/json"})
    assert response.status == 400
    assert "duplicate key" in (await response.json())["error"]["message"]
    assert not mock.state.requests  # nothing reached the upstream


@pytest.mark.parametrize("stream", [True, False])
async def test_an_upstream_html_page_with_a_200_is_a_502_not_a_success(
    gateway: Gateway, mock: Mock, stream: bool,
) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+html", stream=stream), headers=auth())
    assert response.status == 502
    assert "Content-Type" in (await response.json())["error"]["message"]
    (log,) = gateway.request_logs()
    assert log["outcome"] == "upstream_error" and log["attempts"][0]["outcome"] != "ok"


async def test_an_oversized_header_is_a_400_that_does_not_echo_it(mock: Mock, spawned: Spawn) -> None:
    gateway = spawned(mock.url)
    secret = f"{CLIENT_KEY}-{'x' * 9000}"
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                     + secret.encode() + b"\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert b" 400 " in answer.split(b"\r\n", 1)[0]
    assert CLIENT_KEY.encode() not in answer and b"xxxx" not in answer
