"""Every wait is bounded, proven through real sockets: a client that stops reading, an
upstream that drips bytes without ever ending a line, a client that resets before its answer."""

from __future__ import annotations

import asyncio
import socket
import struct

import orjson

from tests._proc import eventually
from tests.conftest import CLIENT_KEY, GatewayFactory, Mock, auth, chat_body


def _request(path: str, body: dict[str, object]) -> bytes:
    data = orjson.dumps(body)
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data


async def test_a_client_that_stops_reading_frees_its_slot_at_the_deadline(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway(
        limits={"max_concurrent_streams": 1, "queue_timeout_seconds": 8},
        upstreams=[{"name": "mock", "dialect": "openai", "base_url": f"{mock.url}/v1",
                    "api_key_env": "MOCK_OPENAI_KEY", "models": ["mock-*"],
                    "total_timeout_seconds": 2}])
    host, port = gateway.client.host, gateway.client.port
    _, writer = await asyncio.open_connection(host, port)
    try:
        # A long unpaced answer and a client that never reads: the gateway's writes block.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(_request("/v1/chat/completions", chat_body("mock-1+words=400000")))
        await writer.drain()
        await eventually(lambda: mock.state.streams, timeout=5)
        # The one slot is held; a second stream waits in the queue and gets it once the
        # stalled client's deadline (2 s) has passed and its upstream was closed.
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(), headers=auth())
        assert response.status == 200
        assert b"[DONE]" in await response.read()
        stalled = mock.state.streams[0]
        assert stalled.client_closed and not stalled.completed
        first = gateway.request_logs()[0]
        # Ended at its deadline: caught in a blocked write (the client's fault, 499), or in
        # the relay's wait just before one (the total deadline, an error event it can't read).
        assert (first["outcome"], first["status"]) in (
            ("client_disconnected", 499), ("upstream_timeout", 200))
        assert 1.9 <= first["duration_ms"] / 1000 < 6
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_partial_line_drip_gets_heartbeats_and_ends_at_the_idle_timeout(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway(
        server={"heartbeat_seconds": 0.3},
        upstreams=[{"name": "mock", "dialect": "openai", "base_url": f"{mock.url}/v1",
                    "api_key_env": "MOCK_OPENAI_KEY", "models": ["mock-*"],
                    "idle_timeout_seconds": 1, "first_byte_timeout_seconds": 5}])
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+drip=0.2"), headers=auth())
    body = await asyncio.wait_for(response.read(), 10)
    # The unfinished line is held by the gateway (the client has none of it), so the client
    # gets heartbeats meanwhile (a proxy with a short read timeout keeps the stream); then
    # exactly one error event names the silence. Nothing of the partial line is sent.
    pings, _, rest = body.rpartition(b": ping\n\n")
    assert pings.replace(b": ping\n\n", b"") == b""  # only whole heartbeats before the error
    assert rest.startswith(b"data: ") and rest.count(b"\n\n") == 1 and rest.endswith(b"\n\n")
    assert rest.count(b'"error"') == 1 and b"idle_timeout_seconds" in rest
    (log,) = gateway.request_logs()
    assert log["outcome"] == "upstream_timeout"
    assert 0.9 <= log["duration_ms"] / 1000 < 5


async def test_a_client_reset_before_its_answer_is_a_499_and_closes_the_upstream(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway()
    sock = socket.create_connection((gateway.client.host, gateway.client.port))
    sock.sendall(_request("/v1/chat/completions", chat_body("mock-1+delay=0.3,tps=20,words=50")))
    await eventually(lambda: mock.state.requests, timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, not FIN
    await eventually(lambda: gateway.request_logs(), timeout=5)
    (log,) = gateway.request_logs()
    assert log["status"] == 499 and log["outcome"] == "client_disconnected"
    await eventually(lambda: mock.state.streams and mock.state.streams[0].ended.is_set(), timeout=5)
    assert not mock.state.streams[0].completed
