"""DESIGN.md's error table, row by row: status and body shape in the route's dialect."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from gateway.auth import hash_key
from tests.conftest import (
    CLIENT_KEY,
    Gateway,
    GatewayFactory,
    Mock,
    auth,
    chat_body,
    free_port,
    upstream_spec,
)

OPENAI_ROUTE = "/v1/chat/completions"
ANTHROPIC_ROUTE = "/v1/messages"


def assert_openai_error(body: dict[str, Any]) -> None:
    assert set(body) == {"error"}
    assert {"message", "type", "code"} <= set(body["error"])
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_anthropic_error(body: dict[str, Any]) -> None:
    assert body["type"] == "error"
    assert {"type", "message"} <= set(body["error"])


async def post(gateway: Gateway, route: str, body: Any, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
    data = raw if raw is not None else orjson.dumps(body)
    response = await gateway.client.post(route, data=data, headers=headers if headers is not None else auth())
    payload = await response.read()
    return response.status, orjson.loads(payload), response.headers


@pytest.mark.parametrize(("route", "check"), [(OPENAI_ROUTE, assert_openai_error),
                                              (ANTHROPIC_ROUTE, assert_anthropic_error)])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"x-api-key": "wrong"},
                                     {"Authorization": "Basic abc"}])
async def test_missing_or_unknown_key_is_401(gateway: Gateway, route: str, check: Any,
                                             headers: dict[str, str]) -> None:
    status, body, _ = await post(gateway, route, chat_body("claude-x"), headers)
    assert status == 401
    check(body)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"text"', b"", b'{"model": "mock-1"}',
     b'{"model": "mock-1", "messages": "hi"}', b'{"model": "mock-1", "messages": []}',
     b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}',
     b'{"messages": [{"role": "user", "content": "x"}]}',
     b'{"model": "mock-1", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
     b'{"model": "mock-1", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
     b'{"model": "mock-1", "messages": [5]}', b"\xff\xfe"],
)
async def test_malformed_bodies_are_400(gateway: Gateway, mock: Mock, raw: bytes) -> None:
    status, body, _ = await post(gateway, OPENAI_ROUTE, None, raw=raw)
    assert status == 400
    assert_openai_error(body)
    status, body, _ = await post(gateway, ANTHROPIC_ROUTE, None, raw=raw)
    assert status == 400
    assert_anthropic_error(body)
    assert mock.state.requests == []  # nothing reached the upstream


async def test_body_over_the_limit_is_413(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"max_body_bytes": 1000})
    big = chat_body(content="x" * 2000)
    status, body, _ = await post(gateway, OPENAI_ROUTE, big)
    assert status == 413
    assert_openai_error(body)
    status, body, _ = await post(gateway, ANTHROPIC_ROUTE, chat_body("claude-x", content="x" * 2000))
    assert status == 413
    assert_anthropic_error(body)


async def test_unrouted_or_forbidden_model_is_404(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=[
        {"name": "narrow", "key_sha256": hash_key(CLIENT_KEY), "models": ["mock-*", "claude-*"]}])
    for model in ("unknown-model", "gpt-4o"):  # no upstream / not allowed for this tenant
        status, body, _ = await post(gateway, OPENAI_ROUTE, chat_body(model))
        assert status == 404
        assert_openai_error(body)
    status, body, _ = await post(gateway, ANTHROPIC_ROUTE, chat_body("nope"))
    assert status == 404
    assert_anthropic_error(body)


async def test_upstream_unreachable_after_retries_is_502(start_gateway: GatewayFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = await start_gateway(upstreams=[
        upstream_spec("dead", dead, models=["*"], max_retries=1, backoff_base_seconds=0.01)])
    status, body, headers = await post(gateway, OPENAI_ROUTE, chat_body())
    assert status == 502
    assert_openai_error(body)
    assert "x-request-id" in headers


async def test_no_first_byte_in_time_is_504(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await start_gateway(upstreams=[
        upstream_spec("slow", f"{mock.url}/v1", models=["*"], max_retries=0, first_byte_timeout_seconds=0.3)])
    status, body, _ = await post(gateway, OPENAI_ROUTE, chat_body("mock-1+delay=5"))
    assert status == 504
    assert_openai_error(body)
    status, body, _ = await post(gateway, OPENAI_ROUTE, chat_body("mock-1+hang"))
    assert status == 504


@pytest.mark.parametrize("code", [400, 404, 422])
async def test_upstream_4xx_passes_through_as_is(gateway: Gateway, mock: Mock, code: int) -> None:
    response = await gateway.client.post(
        OPENAI_ROUTE, json=chat_body(f"mock-1+status={code}"), headers=auth())
    direct = await gateway.client.session.post(
        f"{mock.url}/v1/chat/completions", json=chat_body(f"mock-1+status={code}"))
    assert response.status == code
    assert await response.read() == await direct.read()
    assert len(mock.state.requests) == 2  # tried once, not retried


async def test_failure_after_first_byte_is_one_error_event(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        OPENAI_ROUTE, json=chat_body("mock-1+drop=3"), headers=auth())
    body = await response.read()
    assert response.status == 200
    events = [e for e in body.split(b"\n\n") if e]
    errors = [e for e in events if b'"error"' in e]
    assert len(errors) == 1 and events[-1] == errors[0]
    assert_openai_error(orjson.loads(errors[0].removeprefix(b"data: ")))
    assert len(mock.state.requests) == 1  # never retried after the first byte


async def test_failure_after_first_byte_anthropic_shape(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        ANTHROPIC_ROUTE, json=chat_body("claude-x+drop=2", max_tokens=20), headers=auth())
    body = await response.read()
    last = [e for e in body.split(b"\n\n") if e][-1]
    event, data = last.split(b"\n", 1)
    assert event == b"event: error"
    assert_anthropic_error(orjson.loads(data.removeprefix(b"data: ")))


async def test_non_sse_bytes_mid_stream_end_in_one_error_event(start_gateway: GatewayFactory) -> None:
    # An HTML error page mid-stream is not SSE: the client gets one error event, not the page.
    async def html_after_one_event(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": []}\n\n')
        await response.write(b"<html>502 Bad Gateway</html>\n")
        return response

    server = web.Application()
    server.router.add_post("/v1/chat/completions", html_after_one_event)
    async with TestServer(server) as upstream:
        gateway = await start_gateway(upstreams=[
            upstream_spec("html", str(upstream.make_url("/v1")), models=["*"])])
        response = await gateway.client.post(OPENAI_ROUTE, json=chat_body(), headers=auth())
        body = await response.read()
    assert b"<html>" not in body
    assert body.startswith(b'data: {"choices": []}\n\n')
    assert body.count(b'"error"') == 1


async def test_wrong_method_on_an_api_route_is_405_in_the_dialect(gateway: Gateway) -> None:
    response = await gateway.client.get(OPENAI_ROUTE, headers=auth())
    assert response.status == 405 and "POST" in response.headers["Allow"]
    assert_openai_error(await response.json())
    response = await gateway.client.get(ANTHROPIC_ROUTE, headers=auth())
    assert_anthropic_error(await response.json())


async def test_a_key_that_is_not_utf8_is_401_and_never_logged(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection(gateway.client.host, gateway.client.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                 b"Authorization: Bearer sk-TOPSECRET-\xff\xfe\r\nConnection: close\r\n\r\n{}")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401")
    assert b"TOPSECRET" not in answer and "TOPSECRET" not in gateway.log.getvalue()


async def test_unknown_api_paths_answer_404_in_the_dialect(gateway: Gateway) -> None:
    response = await gateway.client.post("/v1/messages/batches", json={}, headers=auth())
    assert response.status == 404
    assert_anthropic_error(await response.json())
    response = await gateway.client.get("/v1/files", headers=auth())
    assert response.status == 404
    assert_openai_error(await response.json())


async def test_gzip_request_body_is_decoded_and_relayed(gateway: Gateway, mock: Mock) -> None:
    body = orjson.dumps(chat_body(stream=False))
    response = await gateway.client.post(
        OPENAI_ROUTE, data=gzip.compress(body),
        headers={**auth(), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.status == 200
    assert "content-encoding" not in mock.state.requests[-1].headers


async def test_stream_null_means_not_streaming(gateway: Gateway) -> None:
    response = await gateway.client.post(OPENAI_ROUTE, json=chat_body(stream=None), headers=auth())  # type: ignore[arg-type]
    assert response.status == 200 and (await response.json())["object"] == "chat.completion"


async def test_non_stream_hang_is_bounded_by_the_total_timeout_across_retries(
    start_gateway: GatewayFactory, mock: Mock
) -> None:
    gateway = await start_gateway(upstreams=[
        upstream_spec("mock", f"{mock.url}/v1", models=["*"], max_retries=2, total_timeout_seconds=0.5, backoff_base_seconds=0.01)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body, _ = await post(gateway, OPENAI_ROUTE, chat_body("mock-1+hang", stream=False))
    assert status == 504
    assert loop.time() - started < 1.4  # not 3 x 0.5 s
    assert_openai_error(body)


async def test_failed_requests_log_their_retries_and_charge_no_tokens(gateway: Gateway) -> None:
    status, _, _ = await post(gateway, OPENAI_ROUTE, chat_body("mock-1+fail=9"))
    assert status == 502
    log = gateway.request_logs()[-1]
    assert log["retries"] == 2 and log["prompt_tokens"] == 0 and log["completion_tokens"] == 0
