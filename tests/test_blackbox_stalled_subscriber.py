"""Black-box review: a subscriber of `GET /api/chat/streams/{id}` that stops reading is dropped
after `[streams] abandon_seconds` of a write that does not drain. It held its socket, the
stream's bytes in its buffer and (as a watcher) the generation forever, long after the
stream itself was gone: many of them, on one's own stream, held unbounded memory. Through
real sockets: a raw client with a tiny receive buffer that never reads."""

from __future__ import annotations

import asyncio
import socket

from tests._proc import eventually
from tests.conftest import GatewayFactory, auth


async def test_a_subscriber_that_stops_reading_is_dropped(start_gateway: GatewayFactory) -> None:
    # more than the kernel buffers (tcp_wmem) hold, so the writes really wait on the client
    gateway = await start_gateway(streams={"abandon_seconds": 1, "keep_seconds": 60, "max_bytes": 32 << 20})
    created = await gateway.client.post(
        "/api/chat/streams", headers={**auth(), "x-mock-fault": "words=250000,tps=0"},
        json={"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})
    assert created.status == 201
    url = (await created.json())["url"]
    assert gateway.client.port is not None
    idle = socket.socket()
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    idle.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(idle, ("127.0.0.1", gateway.client.port))
    await loop.sock_sendall(idle, f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        def dropped() -> bool:
            return any(line["route"] == "chat_stream_events" for line in gateway.request_logs())

        await eventually(dropped, timeout=15, interval=0.1, what="the stalled subscriber's request ended")
        # a reader that does read still gets the whole stream
        response = await gateway.client.get(url)
        body = await response.text()
        assert response.status == 200 and body.rstrip().endswith("event: done\ndata: {}")
    finally:
        idle.close()
