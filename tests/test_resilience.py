"""Retries, fallbacks and drain, through HTTP against the mock's injected faults."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import orjson

from tests._proc import eventually
from tests.conftest import (
    Gateway,
    GatewayFactory,
    Mock,
    Process,
    Spawn,
    auth,
    chat_body,
    free_port,
    upstream_spec,
)


async def test_flaky_upstream_gives_one_clean_stream_after_retries(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+fail=2"), headers=auth())
    body = await response.read()
    assert response.status == 200
    assert body.endswith(b"data: [DONE]\n\n") and b'"error"' not in body
    assert len(mock.state.requests) == 3
    assert len({r.request_id for r in mock.state.requests}) == 1  # one client request, retried
    assert gateway.request_logs()[-1]["retries"] == 2
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_upstream_retries_total{reason="status",upstream="mock"} 2.0' in metrics


async def test_retries_are_bounded_by_max_retries(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+fail=5"), headers=auth())
    assert response.status == 502
    assert len(mock.state.requests) == 3  # 1 + max_retries (2)


async def test_upstream_4xx_is_tried_once(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+status=400"), headers=auth())
    assert response.status == 400
    assert len(mock.state.requests) == 1


async def test_upstream_429_is_retried_and_honours_a_short_retry_after(
    gateway: Gateway, mock: Mock
) -> None:
    started = time.monotonic()
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+fail=1,fail_status=429,retry_after=0.3"),
        headers=auth())
    await response.read()
    assert response.status == 200
    assert len(mock.state.requests) == 2
    assert time.monotonic() - started >= 0.3


async def test_unreachable_primary_falls_back(start_gateway: GatewayFactory, mock: Mock) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gateway = await start_gateway(upstreams=[
        upstream_spec("primary", dead, models=["mock-*"], fallbacks=["backup"], max_retries=1, backoff_base_seconds=0.01),
        upstream_spec("backup", f"{mock.url}/v1", models=["backup-only-*"]),
    ])
    response = await gateway.client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    body = await response.read()
    assert response.status == 200 and body.endswith(b"data: [DONE]\n\n")
    log = gateway.request_logs()[-1]
    assert log["upstream"] == "backup" and log["retries"] == 2
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_upstream_errors_total{kind="connect",upstream="primary"} 2.0' in metrics


async def test_failure_after_first_byte_is_not_retried_nor_falls_back(
    start_gateway: GatewayFactory, mock: Mock
) -> None:
    gateway = await start_gateway(upstreams=[
        upstream_spec("primary", f"{mock.url}/v1", models=["mock-*"], fallbacks=["backup"]),
        upstream_spec("backup", f"{mock.url}/v1", models=["x-*"]),
    ])
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+drop=2"), headers=auth())
    body = await response.read()
    assert body.count(b'"error"') == 1
    assert len(mock.state.requests) == 1


async def test_idle_upstream_mid_stream_ends_in_an_error_event(
    start_gateway: GatewayFactory, mock: Mock
) -> None:
    gateway = await start_gateway(upstreams=[
        upstream_spec("mock", f"{mock.url}/v1", models=["mock-*"], idle_timeout_seconds=0.3)])
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+silence=3@2"), headers=auth())
    body = await response.read()
    error = orjson.loads(body.split(b"\n\n")[-2].removeprefix(b"data: "))
    assert error["error"]["code"] == "upstream_timeout"
    record = mock.state.streams[-1]
    await asyncio.wait_for(record.ended.wait(), 5)  # and the upstream was let go
    assert not record.completed


async def stream_then_sigterm(session: aiohttp.ClientSession, gateway: Process,
                              model: str) -> aiohttp.ClientResponse:
    """Start a stream, see its first bytes, then SIGTERM the gateway (by its PID)."""
    response = await session.post(f"{gateway.url}/v1/chat/completions", json=chat_body(model),
                                  headers=auth())
    first = await response.content.readany()
    assert first.startswith(b"data:")
    gateway.child.send(signal.SIGTERM)
    return response


async def test_sigterm_drains_active_streams_then_exits_zero(mock: Mock, spawned: Spawn) -> None:
    gateway = spawned(mock.url, server={"drain_seconds": 10})
    async with aiohttp.ClientSession() as session:
        response = await stream_then_sigterm(session, gateway, "mock-1+tps=10,words=20")

        async def not_ready() -> bool:
            async with session.get(f"{gateway.url}/readyz") as ready:
                return ready.status == 503

        await eventually(not_ready, what="/readyz says 503 while draining")
        refused = await session.post(f"{gateway.url}/v1/chat/completions", json=chat_body(),
                                     headers=auth())
        assert refused.status == 503 and "Retry-After" in refused.headers
        rest = await response.read()
        assert rest.endswith(b"data: [DONE]\n\n")  # the stream ran to its end
    assert await gateway.exited(15) == 0
    assert '"drain_started"' in gateway.stderr()


async def test_drain_timeout_ends_streams_with_an_error_event(mock: Mock, spawned: Spawn) -> None:
    gateway = spawned(mock.url, server={"drain_seconds": 0.3})
    async with aiohttp.ClientSession() as session:
        response = await stream_then_sigterm(session, gateway, "mock-1+tps=5,words=100")
        body = await asyncio.wait_for(response.read(), 10)
    last = orjson.loads(body.split(b"\n\n")[-2].removeprefix(b"data: "))
    assert "shutting down" in last["error"]["message"]
    assert await gateway.exited(15) == 0
    record = mock.state.streams[-1]
    await asyncio.wait_for(record.ended.wait(), 5)
    assert not record.completed


async def test_upstream_429_that_persists_is_passed_through(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+status=429,retry_after=60"), headers=auth())
    body = await response.json()
    assert response.status == 429 and response.headers["Retry-After"] == "60"
    assert "error" in body
    assert len(mock.state.requests) == 1  # Retry-After longer than we wait: not retried


async def test_readyz_is_503_when_no_upstream_is_reachable(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(upstreams=[
        upstream_spec("dead", f"http://127.0.0.1:{free_port()}/v1", models=["*"])])
    ready = await gateway.client.get("/readyz")
    assert ready.status == 503
    assert (await gateway.client.get("/healthz")).status == 200  # alive, just not ready


async def test_stream_requests_ask_the_upstream_for_no_compression(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers={**auth(), "Accept-Encoding": "gzip"})
    await response.read()
    assert mock.state.requests[-1].headers["accept-encoding"] == "identity"


async def test_sigterm_lets_a_non_stream_request_in_flight_finish(mock: Mock, spawned: Spawn) -> None:
    gateway = spawned(mock.url, server={"drain_seconds": 10})
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.post(
            f"{gateway.url}/v1/chat/completions", json=chat_body("mock-1+delay=1", stream=False),
            headers=auth()))
        await eventually(lambda: mock.state.requests, what="the request reached the upstream")
        gateway.child.send(signal.SIGTERM)
        response = await asyncio.wait_for(pending, 10)
        assert response.status == 200
        assert (await response.json())["object"] == "chat.completion"
    assert await gateway.exited(15) == 0


def _patient_upstream(mock: Mock) -> list[dict[str, Any]]:
    """The mock as the one upstream, waited for longer than drain lasts."""
    return [upstream_spec("mock", f"{mock.url}/v1", models=["mock-*"], first_byte_timeout_seconds=30)]


async def test_drain_timeout_ends_a_stream_still_on_heartbeats_with_an_error_event(
    mock: Mock, spawned: Spawn,
) -> None:
    # The upstream never answers; the client has its 200 and `: ping`s while failover waits.
    gateway = spawned(mock.url, server={"drain_seconds": 0.5, "heartbeat_seconds": 0.3},
                      upstreams=_patient_upstream(mock))
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{gateway.url}/v1/chat/completions",
                                      json=chat_body("mock-1+hang"), headers=auth())
        assert response.status == 200
        assert (await response.content.readany()).startswith(b": ping")
        gateway.child.send(signal.SIGTERM)
        body = await asyncio.wait_for(response.read(), 10)
    events = [e for e in body.split(b"\n\n") if e and not e.startswith(b": ping")]
    assert len(events) == 1, body  # one error event, then the end (not a silent close)
    error = orjson.loads(events[0].removeprefix(b"data: "))
    assert "shutting down" in error["error"]["message"]
    assert await gateway.exited(15) == 0
    (line,) = [orjson.loads(x) for x in gateway.stderr().splitlines()
               if x.startswith("{") and '"event":"request"' in x.replace(" ", "")]
    assert line["status"] == 200 and line["outcome"] != "client_disconnected"
    assert '"streams_stopped":1' in gateway.stderr().replace(" ", "")


async def test_drain_timeout_answers_a_stream_not_yet_committed_with_a_503(
    mock: Mock, spawned: Spawn,
) -> None:
    gateway = spawned(mock.url, server={"drain_seconds": 0.3, "heartbeat_seconds": 30},
                      upstreams=_patient_upstream(mock))
    async with aiohttp.ClientSession() as session:
        pending = asyncio.create_task(session.post(
            f"{gateway.url}/v1/chat/completions", json=chat_body("mock-1+hang"), headers=auth()))
        await eventually(lambda: mock.state.requests, timeout=5)
        gateway.child.send(signal.SIGTERM)
        response = await asyncio.wait_for(pending, 10)
        assert response.status == 503 and "Retry-After" in response.headers
        assert "shutting down" in (await response.json())["error"]["message"]
    assert await gateway.exited(15) == 0
