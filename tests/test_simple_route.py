"""`POST /api/chat/stream`: simple message/done/error events from either upstream dialect."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.mock.shapes import answer_words
from gateway.sse import EventParser
from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body


async def simple_events(gateway: Gateway, body: dict[str, Any], key_headers: dict[str, str] | None = None
                        ) -> tuple[int, list[tuple[str, Any]], str]:
    response = await gateway.client.post("/api/chat/stream", json=body,
                                         headers=auth() if key_headers is None else key_headers)
    raw = await response.read()
    events = [(e.event, orjson.loads(e.data)) for e in EventParser().feed(raw)]
    return response.status, events, response.headers["Content-Type"]


@pytest.mark.parametrize("model", ["mock-1", "claude-x", "mock-1+fragment,crlf", "claude-x+multiline"])
async def test_answer_as_message_events_then_done(gateway: Gateway, model: str) -> None:
    status, events, content_type = await simple_events(gateway, chat_body(model, content="say it"))
    assert status == 200 and content_type == "text/event-stream"
    messages = [data for name, data in events if name == "message"]
    assert events[-1] == ("done", {})
    assert all(data["done"] is False for data in messages)
    text = "".join(data["content"] for data in messages)
    assert text.split() == answer_words("say it", 12)


async def test_upstream_failure_mid_stream_is_one_error_event(gateway: Gateway) -> None:
    status, events, _ = await simple_events(gateway, chat_body("claude-x+drop=3"))
    assert status == 200
    names = [name for name, _ in events]
    assert names.count("error") == 1 and names[-1] == "error" and "done" not in names
    assert events[-1][1]["code"] == 502 and events[-1][1]["message"]


async def test_json_garbage_mid_stream_is_an_error_event(gateway: Gateway) -> None:
    _, events, _ = await simple_events(gateway, chat_body("mock-1+garbage=2"))
    assert [name for name, _ in events][-1] == "error"


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [({}, chat_body(), 401), (None, {"model": "mock-1"}, 400), (None, chat_body("nope"), 404)],
)
async def test_errors_before_the_stream_are_error_events_with_the_status(
    gateway: Gateway, headers: dict[str, str] | None, body: dict[str, Any], code: int
) -> None:
    status, events, content_type = await simple_events(gateway, body, headers)
    assert status == code and content_type == "text/event-stream"
    assert events == [("error", {"code": code, "message": events[0][1]["message"]})]


async def test_upstream_4xx_before_the_stream(gateway: Gateway) -> None:
    response = await gateway.client.post("/api/chat/stream", json=chat_body("mock-1+status=400"), headers=auth())
    assert response.status == 400


async def test_cors_preflight_for_a_browser_origin(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await start_gateway(server={"cors_origins": ["https://app.example.com"]})
    preflight = await gateway.client.options("/api/chat/stream", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    response = await gateway.client.post("/api/chat/stream", json=chat_body(),
                                         headers={**auth(), "Origin": "https://app.example.com"})
    await response.read()
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()
    other = await gateway.client.options("/api/chat/stream", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_text_before_a_bad_event_in_the_same_read_is_not_lost(gateway: Gateway) -> None:
    _, events, _ = await simple_events(gateway, chat_body("mock-1+garbage=2,words=4"))
    names = [name for name, _ in events]
    assert names == ["message", "message", "error"]
    assert "".join(data["content"] for name, data in events if name == "message").split() == \
        answer_words("hello there", 4)[:2]


async def test_cors_preflights_are_not_counted_as_requests(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"cors_origins": ["https://app.example.com"]})
    preflight = await gateway.client.options("/v1/chat/completions", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-stainless-os"})
    assert preflight.status == 200  # the SDKs' own headers are allowed
    assert gateway.request_logs() == []
