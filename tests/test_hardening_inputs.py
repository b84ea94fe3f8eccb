"""Bad input is a clear 4xx in the route's shape, never a 500, and an upstream's HTML page
is never relayed as a success."""

from __future__ import annotations

import asyncio
import zlib

import aiohttp
import orjson
import pytest

from tests.conftest import CLIENT_KEY, Gateway, Mock, Spawn, auth, chat_body


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
            assert "could not be parsed" in str(body)
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
