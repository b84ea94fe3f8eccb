"""Failover that heartbeats don't end, through HTTP: once the client has waited a heartbeat
interval it gets its 200 and `: ping` heartbeats while targets are still tried; the relay
starts at the first data byte; no target left is one error event in the route's shape."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import orjson

from gateway.relay.loop import HEARTBEAT
from tests._proc import eventually
from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body

FAST = {"first_byte_timeout_seconds": 0.6, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.5,
        "max_retries": 1, "failures_to_trip": 0, "cooldown_seconds": 0.5}


async def _start(start_gateway: GatewayFactory, mock: Mock, primary: str, fallback: str = "m2",
                 heartbeat: float = 0.2, dialect: str = "openai") -> Gateway:
    base = f"{mock.url}/v1" if dialect == "openai" else mock.url
    key = "MOCK_OPENAI_KEY" if dialect == "openai" else "MOCK_ANTHROPIC_KEY"
    common = {"dialect": dialect, "base_url": base, "api_key_env": key, **FAST}
    return await start_gateway(
        server={"heartbeat_seconds": heartbeat},
        upstreams=[{"name": "a", **common}, {"name": "b", **common}],
        routes=[{"model": "chat", "targets": [f"a:{primary}", f"b:{fallback}"]}])


def _pings_then_rest(body: bytes) -> tuple[int, bytes]:
    pings = 0
    while body.startswith(HEARTBEAT):
        pings, body = pings + 1, body[len(HEARTBEAT):]
    return pings, body


def _events(rest: bytes) -> list[bytes]:
    assert rest.endswith(b"\n\n")
    return rest[:-2].split(b"\n\n")


def _tries(gateway: Gateway) -> list[tuple[str, str]]:
    return [(a["upstream"], a["outcome"]) for a in gateway.request_logs()[-1]["attempts"]]


async def _stream(gateway: Gateway, path: str = "/v1/chat/completions",
                  body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    response = await gateway.client.post(path, json=body or chat_body("chat"), headers=auth())
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response.status, await response.read()


def _models(rest: bytes) -> set[str]:
    return {orjson.loads(e[len(b"data: "):])["model"] for e in _events(rest) if e != b"data: [DONE]"}


async def test_a_primary_silent_after_its_200_fails_over_while_the_client_gets_pings(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+delay=3")
    status, body = await _stream(gateway)
    pings, rest = _pings_then_rest(body)
    assert status == 200 and pings >= 2  # 0.6 s of first-byte timeout at 0.2 s per ping
    assert rest.startswith(b"data: {") and rest.endswith(b"data: [DONE]\n\n")
    assert _models(rest) == {"m2"}
    assert _tries(gateway) == [("a", "timeout"), ("b", "ok")]
    assert await gateway.metric("gateway_heartbeats_total") == pings
    line = gateway.request_logs()[-1]
    assert (line["status"], line["outcome"], line["upstream"]) == (200, "ok", "b")


async def test_a_primary_that_sends_no_headers_fails_over_while_the_client_gets_pings(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+hang")
    status, body = await _stream(gateway)
    pings, rest = _pings_then_rest(body)
    assert status == 200 and pings >= 2
    assert rest.endswith(b"data: [DONE]\n\n") and _models(rest) == {"m2"}
    assert _tries(gateway) == [("a", "timeout"), ("b", "ok")]


async def test_a_5xx_after_the_pings_began_still_fails_over(start_gateway: GatewayFactory, mock: Mock) -> None:
    # a is silent past its first-byte timeout (pings begin); b's first try is a 503, retried.
    gateway = await _start(start_gateway, mock, "m1+hang", fallback="m2+fail=1,fail_status=503")
    status, body = await _stream(gateway)
    pings, rest = _pings_then_rest(body)
    assert status == 200 and pings >= 2
    assert rest.endswith(b"data: [DONE]\n\n")
    assert _tries(gateway) == [("a", "timeout"), ("b", "status"), ("b", "ok")]


async def test_every_target_failing_after_pings_is_one_error_event(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+hang", fallback="m2+hang")
    status, body = await _stream(gateway)
    pings, rest = _pings_then_rest(body)
    assert status == 200 and pings >= 4  # two first-byte timeouts of 0.6 s
    [event] = _events(rest)
    assert event.startswith(b"data: ")
    error = orjson.loads(event[len(b"data: "):])["error"]
    assert error["code"] == "upstream_timeout"
    assert _tries(gateway) == [("a", "timeout"), ("b", "timeout")]
    line = gateway.request_logs()[-1]
    assert (line["status"], line["outcome"]) == (200, "upstream_timeout")


async def test_every_target_failing_after_pings_is_one_anthropic_error_event(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+hang", fallback="m2+status=503", dialect="anthropic")
    body = {"model": "chat", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "hello"}]}
    status, raw = await _stream(gateway, "/v1/messages", body)
    pings, rest = _pings_then_rest(raw)
    assert status == 200 and pings >= 2
    [event] = _events(rest)
    name, data = event.split(b"\n")
    assert name == b"event: error"
    assert orjson.loads(data[len(b"data: "):])["type"] == "error"
    assert [t[1] for t in _tries(gateway)] == ["timeout", "status", "status"]


async def test_a_first_byte_before_the_heartbeat_interval_gets_no_ping(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1", heartbeat=5)
    status, body = await _stream(gateway)
    assert status == 200
    assert body.startswith(b"data: {") and body.endswith(b"data: [DONE]\n\n")
    assert _models(body) == {"m1"}
    assert await gateway.metric("gateway_heartbeats_total") == 0
    assert _tries(gateway) == [("a", "ok")]


# --- cost per attempt ------------------------------------------------------------------

PRICES = {"m1*": {"input": 1.0, "output": 2.0}, "m2*": {"input": 10.0, "output": 20.0}}


def _micros(attempt: dict[str, Any], input_rate: int, output_rate: int) -> int:
    """USD per 1M tokens is micro-dollars per token: the exact cost in micro-dollars."""
    return attempt["prompt_tokens"] * input_rate + attempt["completion_tokens"] * output_rate


async def test_only_the_attempt_that_answered_is_charged_in_the_log(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    common = {"dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY", **FAST}
    gateway = await start_gateway(
        prices=PRICES, upstreams=[{"name": "a", **common}, {"name": "b", **common}],
        routes=[{"model": "chat", "targets": ["a:m1+status=503", "b:m2"]}])
    for stream in (False, True):
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body("chat", stream=stream), headers=auth())
        assert response.status == 200
        await response.read()
        line = gateway.request_logs()[-1]
        failed_a, failed_a2, answered = line["attempts"]
        assert [failed_a["outcome"], failed_a2["outcome"], answered["outcome"]] == ["status", "status", "ok"]
        assert failed_a["cost_usd"] == failed_a2["cost_usd"] == 0.0
        assert answered["prompt_tokens"] == line["prompt_tokens"] > 0
        assert answered["completion_tokens"] == line["completion_tokens"] > 0
        assert round(answered["cost_usd"] * 1_000_000) == _micros(answered, 10, 20)
        assert answered["cost_usd"] == line["cost_usd"]


async def test_a_resumed_stream_charges_each_attempt_that_streamed_at_its_own_model(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    common = {"dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY", **FAST}
    gateway = await start_gateway(
        prices=PRICES, upstreams=[{"name": "a", **common}, {"name": "b", **common, "supports_prefill": True}],
        routes=[{"model": "chat", "targets": ["a:m1+drop=4", "b:m2"], "resume_midstream": True}])
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
    assert response.status == 200
    assert (await response.read()).endswith(b"data: [DONE]\n\n")
    line = gateway.request_logs()[-1]
    cut, continued = line["attempts"]
    assert (cut["outcome"], continued["outcome"]) == ("cut", "ok")
    assert cut["completion_tokens"] > 0 and continued["completion_tokens"] > 0
    assert cut["prompt_tokens"] + continued["prompt_tokens"] == line["prompt_tokens"]
    assert cut["completion_tokens"] + continued["completion_tokens"] == line["completion_tokens"]
    assert round(cut["cost_usd"] * 1_000_000) == _micros(cut, 1, 2)
    assert round(continued["cost_usd"] * 1_000_000) == _micros(continued, 10, 20)
    # the request's own cost is the sum of its parts, each at its own model's price
    assert round(line["cost_usd"] * 1_000_000) == _micros(cut, 1, 2) + _micros(continued, 10, 20)


async def test_a_client_that_leaves_during_the_heartbeats_closes_the_upstream_at_once(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+delay=5")
    sock = socket.create_connection((gateway.client.host, gateway.client.port))
    data = orjson.dumps(chat_body("chat"))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: "
                 + auth()["Authorization"].encode() + b"\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    sock.settimeout(5)
    got = await asyncio.to_thread(sock.recv, 4096)  # the 200 headers and a first ping
    assert b" 200 " in got.split(b"\r\n")[0]
    await eventually(lambda: mock.state.streams, timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    record = mock.state.streams[0]
    await asyncio.wait_for(record.ended.wait(), 2)  # long before its 5 s delay ends
    assert record.client_closed and not record.completed
    (log,) = await eventually(lambda: gateway.request_logs(), timeout=5)
    assert log["outcome"] == "client_disconnected"
    assert len(mock.state.requests) == 1  # no fallback tried for a client that is gone


async def test_a_responses_stream_also_fails_over_while_the_client_gets_pings(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+delay=3")
    status, body = await _stream(gateway, "/v1/responses", {"model": "chat", "input": "hello", "stream": True})
    pings, rest = _pings_then_rest(body)
    assert status == 200 and pings >= 2
    assert b"event: response.completed" in rest
    assert _tries(gateway) == [("a", "timeout"), ("b", "ok")]
