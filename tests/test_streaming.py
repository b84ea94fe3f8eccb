"""Streaming behaviour through HTTP: zero buffering, heartbeats, cancel on disconnect."""

from __future__ import annotations

import asyncio
import time

import openai

from tests._proc import eventually
from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body


async def read_timed_events(gateway: Gateway, model: str) -> list[tuple[float, bytes]]:
    """(arrival time, bytes) for each piece the client's socket hands over."""
    # Asking for usage: every event the mock sends is the client's (none is hidden).
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(model, stream_options={"include_usage": True}),
        headers=auth())
    assert response.status == 200
    arrivals: list[tuple[float, bytes]] = []
    async for piece in response.content.iter_any():
        arrivals.append((time.monotonic(), piece))
    return arrivals


async def test_each_paced_chunk_reaches_the_client_before_the_next_is_sent(
    gateway: Gateway, mock: Mock
) -> None:
    arrivals = await read_timed_events(gateway, "mock-1+tps=20,words=8")
    record = mock.state.streams[-1]
    body = b"".join(piece for _, piece in arrivals)
    events = [e + b"\n\n" for e in body.split(b"\n\n") if e]
    assert len(events) == record.chunks_sent == len(record.sent_at)
    # Map every event to the time its last byte arrived at the client.
    arrived_at: list[float] = []
    seen = b""
    for at, piece in arrivals:
        seen += piece
        while len(arrived_at) < seen.count(b"\n\n"):
            arrived_at.append(at)
    # The mock paces content chunks (50 ms apart); where it paused, the event before the pause
    # must have reached the client before the one after it was even sent.
    paced = [i for i in range(len(events) - 1) if record.sent_at[i + 1] - record.sent_at[i] > 0.02]
    assert len(paced) >= 6
    for i in paced:
        assert arrived_at[i] < record.sent_at[i + 1], f"event {i} waited for event {i + 1}"


async def test_fragmented_upstream_lines_are_reassembled(gateway: Gateway, mock: Mock) -> None:
    whole = await gateway.client.post("/v1/chat/completions", json=chat_body("mock-1"), headers=auth())
    expected = await whole.read()
    split = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+fragment"), headers=auth())
    got = await split.read()
    assert got.count(b"data:") == expected.count(b"data:")
    # the relay never forwards part of a line: every write ends with a line terminator
    assert all(e.startswith(b"data: ") for e in got.split(b"\n\n") if e)


async def test_openai_sdk_parses_cr_and_crlf_streams(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=_key(), max_retries=0) as client:
        for fault in ("cr", "crlf", "multiline", "fragment,crlf"):
            stream = await client.chat.completions.create(
                model=f"mock-1+{fault}", messages=[{"role": "user", "content": "hi"}], stream=True)
            words = [c.choices[0].delta.content async for c in stream
                     if c.choices and c.choices[0].delta.content]
            assert len(words) == 12, fault


def _key() -> str:
    from tests.conftest import CLIENT_KEY

    return CLIENT_KEY


async def test_silent_upstream_gets_heartbeats_between_events(
    start_gateway: GatewayFactory, mock: Mock
) -> None:
    gateway = await start_gateway(server={"heartbeat_seconds": 0.2})
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+silence=0.8@2,words=4"), headers=auth())
    body = await response.read()
    assert body.count(b": ping\n\n") >= 2
    # heartbeats stand only between events: every ping follows a blank line
    for i in range(len(body)):
        if body.startswith(b": ping", i):
            assert body[:i].endswith(b"\n\n")
    assert body.endswith(b"data: [DONE]\n\n")
    assert await gateway.metric("gateway_heartbeats_total") >= 2


async def test_heartbeats_never_split_a_multiline_event(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"heartbeat_seconds": 0.05})
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=_key(), max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="mock-1+multiline,fragment,tps=30,words=5",
            messages=[{"role": "user", "content": "hi"}], stream=True)
        words = [c.choices[0].delta.content async for c in stream
                 if c.choices and c.choices[0].delta.content]
    assert len(words) == 5


async def test_openai_sdk_stream_survives_heartbeats(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"heartbeat_seconds": 0.1})
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=_key(), max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="mock-1+silence=0.5@1,words=3", messages=[{"role": "user", "content": "hi"}],
            stream=True)
        words = [c.choices[0].delta.content async for c in stream
                 if c.choices and c.choices[0].delta.content]
    assert len(words) == 3


async def test_client_disconnect_closes_the_upstream_and_charges_what_was_received(
    gateway: Gateway, mock: Mock
) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=20,words=200"), headers=auth())
    received = 0
    async for _ in response.content.iter_any():
        received += 1
        if received >= 3:
            break
    response.close()  # the client goes away
    closed_by_client = time.monotonic()
    record = mock.state.streams[-1]
    await asyncio.wait_for(record.ended.wait(), 5)
    assert record.client_closed and not record.completed
    assert record.closed_at is not None and record.closed_at - closed_by_client < 0.5
    assert record.chunks_sent < 50  # far fewer than the full answer
    # the handler's log line follows the cancel
    (log,) = await eventually(gateway.request_logs, what="the request's log line")
    assert log["outcome"] == "client_disconnected"
    assert 0 < log["completion_tokens"] <= record.chunks_sent
    assert await gateway.metric("gateway_client_disconnects_total", tenant="tenant-a") == 1
    assert await gateway.metric("gateway_active_streams") == 0


async def test_heartbeats_flow_while_the_upstream_thinks_before_its_first_byte(
    start_gateway: GatewayFactory, mock: Mock
) -> None:
    gateway = await start_gateway(server={"heartbeat_seconds": 0.2})
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=_key(), max_retries=0) as client:
        response = await client.chat.completions.with_raw_response.create(
            model="mock-1+delay=0.7,words=3", messages=[{"role": "user", "content": "hi"}], stream=True)
        stream = response.parse()
        words = [c.choices[0].delta.content async for c in stream
                 if c.choices and c.choices[0].delta.content]
    assert len(words) == 3
    raw = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+delay=0.7,words=3"), headers=auth())
    body = await raw.read()
    assert body.startswith(b": ping\n\n: ping\n\n")  # >= 2 before the first upstream byte
    assert body.endswith(b"data: [DONE]\n\n")
    log = gateway.request_logs()[-1]
    assert log["ttfb_ms"] >= 700  # TTFB counts the upstream's first byte, not a heartbeat


async def test_first_byte_timeout_after_heartbeats_is_an_error_event(
    start_gateway: GatewayFactory, mock: Mock
) -> None:
    gateway = await start_gateway(server={"heartbeat_seconds": 0.1}, upstreams=[
        {"name": "mock", "dialect": "openai", "base_url": f"{mock.url}/v1",
         "api_key_env": "MOCK_OPENAI_KEY", "models": ["mock-*"], "first_byte_timeout_seconds": 0.5}])
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+delay=5"), headers=auth())
    body = await response.read()
    assert response.status == 200 and body.startswith(b": ping\n\n")
    assert body.count(b'"error"') == 1 and b"no first byte" in body
    record = mock.state.streams[-1]
    await asyncio.wait_for(record.ended.wait(), 5)  # the upstream was let go
