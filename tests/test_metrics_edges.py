"""`gateway_ttfb_seconds` and `gateway_stream_duration_seconds` on every way a stream ends,
through HTTP: a stream whose first data line reached the client is counted in both, once,
however it ends (ok, upstream error, drain, the client going away); one that ended before
any data line is in neither, and its log line has no `ttfb_ms`."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import ClientResponse
from prometheus_client.parser import text_string_to_metric_families

from gateway.state import RUNTIME
from tests._proc import eventually
from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body, raw_config, upstream_spec

TENANT = "tenant-a"
#: a paced answer (5 tokens a second): a client reads its first lines long before its end
PACED = "mock-1+tps=5,words=60"
CLAUDE_PACED = "claude-3-haiku+tps=5,words=60"
HISTOGRAMS = ("gateway_ttfb_seconds_count", "gateway_stream_duration_seconds_count")

#: route path -> (request body, model label, upstream label)
ROUTES: dict[str, tuple[dict[str, Any], str, str]] = {
    "/v1/chat/completions": (chat_body(PACED), "mock-*", "mock"),
    "/v1/responses": ({"model": PACED, "input": "hello there", "stream": True}, "mock-*", "mock"),
    "/v1/completions": ({"model": PACED, "prompt": "hello there", "stream": True}, "mock-*", "mock"),
    "/v1/messages": (chat_body(CLAUDE_PACED, max_tokens=100), "claude-*", "mock-anthropic"),
    "/api/chat/stream": (chat_body(PACED), "mock-*", "mock"),
}


def counts(text: str, model: str, upstream: str) -> tuple[float, float]:
    """(ttfb count, stream duration count) of one label set; 0 for a series not there yet."""
    found = dict.fromkeys(HISTOGRAMS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found and sample.labels == {
                    "tenant": TENANT, "model": model, "upstream": upstream}:
                found[sample.name] = sample.value
    ttfb, duration = (found[name] for name in HISTOGRAMS)
    return ttfb, duration


async def read_data_lines(response: ClientResponse, wanted: int) -> int:
    """Read the stream until `wanted` `data:` lines came (or it ended); how many came."""
    seen = 0
    while seen < wanted:
        line = await response.content.readline()
        if not line:
            break
        seen += line.startswith(b"data:")
    return seen


async def request_log(gateway: Gateway, before: int) -> dict[str, Any]:
    """The log line of the request that ended after `before` lines were logged."""
    logs = await eventually(lambda: gateway.request_logs()[before:], what="the request's log line")
    (log,) = logs
    return log


@pytest.mark.parametrize("path", list(ROUTES))
async def test_client_gone_after_data_counts_its_ttfb_and_duration(gateway: Gateway, path: str) -> None:
    body, model, upstream = ROUTES[path]
    before = counts(await gateway.metrics(), model, upstream)
    logged = len(gateway.request_logs())
    response = await gateway.client.post(path, json=body, headers=auth())
    assert response.status == 200
    assert await read_data_lines(response, 3) == 3
    response.close()  # the client goes away mid-stream

    log = await request_log(gateway, logged)
    assert (log["status"], log["outcome"]) == (499, "client_disconnected")
    assert isinstance(log["ttfb_ms"], float) and 0 < log["ttfb_ms"] <= log["duration_ms"]
    assert log["completion_tokens"] >= 1  # what was received is still charged
    after = counts(await gateway.metrics(), model, upstream)
    assert after == (before[0] + 1, before[1] + 1)


async def test_stream_that_ends_well_counts_once(gateway: Gateway) -> None:
    before = counts(await gateway.metrics(), "mock-*", "mock")
    logged = len(gateway.request_logs())
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+words=5"), headers=auth())
    assert (await response.read()).endswith(b"data: [DONE]\n\n")
    log = await request_log(gateway, logged)
    assert (log["status"], log["outcome"]) == (200, "ok") and log["ttfb_ms"] is not None
    assert counts(await gateway.metrics(), "mock-*", "mock") == (before[0] + 1, before[1] + 1)


async def test_upstream_cut_after_data_counts_once(gateway: Gateway) -> None:
    before = counts(await gateway.metrics(), "mock-*", "mock")
    logged = len(gateway.request_logs())
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+drop=3"), headers=auth())
    body = await response.read()
    assert response.status == 200 and b'"error"' in body
    log = await request_log(gateway, logged)
    assert (log["status"], log["outcome"]) == (200, "upstream_error") and log["ttfb_ms"] is not None
    assert counts(await gateway.metrics(), "mock-*", "mock") == (before[0] + 1, before[1] + 1)


async def test_stream_stopped_by_drain_after_data_counts_once(gateway: Gateway) -> None:
    before = counts(await gateway.metrics(), "mock-*", "mock")
    logged = len(gateway.request_logs())
    response = await gateway.client.post("/v1/chat/completions", json=chat_body(PACED), headers=auth())
    assert await read_data_lines(response, 2) == 2
    # What drain does once `drain_seconds` ran out (server.py): every stream is stopped.
    assert gateway.client.app[RUNTIME].stop_streams("the gateway is shutting down") == 1
    rest = await response.read()
    assert b"the gateway is shutting down" in rest
    log = await request_log(gateway, logged)
    assert (log["status"], log["outcome"]) == (200, "shed") and log["ttfb_ms"] is not None
    assert counts(await gateway.metrics(), "mock-*", "mock") == (before[0] + 1, before[1] + 1)


async def test_stream_that_ends_before_any_data_is_in_neither(
        start_gateway: GatewayFactory, mock: Mock) -> None:
    # The client has its 200 and heartbeats while the upstream sends no first byte.
    upstream = {**raw_config(mock.url)["upstreams"][0], "max_retries": 0,
                "first_byte_timeout_seconds": 0.5}
    gateway = await start_gateway(server={"heartbeat_seconds": 0.1}, upstreams=[upstream])
    before = counts(await gateway.metrics(), "mock-*", "mock")

    logged = len(gateway.request_logs())
    timed_out = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+hang"), headers=auth())
    assert timed_out.status == 200 and b'"error"' in await timed_out.read()
    log = await request_log(gateway, logged)
    assert (log["status"], log["outcome"], log["ttfb_ms"]) == (200, "upstream_timeout", None)

    logged = len(gateway.request_logs())
    left = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+hang"), headers=auth())
    assert left.status == 200 and await left.content.readuntil(b"\n\n") == b": ping\n\n"
    left.close()  # gone after a heartbeat, before any data
    log = await request_log(gateway, logged)
    assert (log["status"], log["outcome"], log["ttfb_ms"]) == (499, "client_disconnected", None)

    assert counts(await gateway.metrics(), "mock-*", "mock") == before


async def test_resumed_stream_keeps_its_first_attempts_ttfb(
        start_gateway: GatewayFactory, mock: Mock) -> None:
    fast = {"max_retries": 0, "failures_to_trip": 0, "first_byte_timeout_seconds": 5.0}
    upstreams = [
        upstream_spec("a", f"{mock.url}/v1", **fast),
        upstream_spec("b", f"{mock.url}/v1", supports_prefill=True, **fast),
    ]
    # `a` is cut after 3 paced chunks; `b` continues the stream.
    routes = [{"model": "chat", "targets": ["a:m1+tps=4,drop=3", "b:m2"], "resume_midstream": True}]
    gateway = await start_gateway(upstreams=upstreams, routes=routes)
    logged = len(gateway.request_logs())
    sent = time.perf_counter()
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
    assert await read_data_lines(response, 1) == 1
    first_data = time.perf_counter() - sent
    assert (await response.read()).endswith(b"data: [DONE]\n\n")
    log = await request_log(gateway, logged)
    assert [a["upstream"] for a in log["attempts"]] == ["a", "b"]
    # The gateway's [arrival, first write] lies inside the client's [send, first data line]:
    # the first byte is `a`'s, not the continuation's (which came after the cut).
    assert 0 < log["ttfb_ms"] / 1000 <= first_data
    assert counts(await gateway.metrics(), "chat", log["upstream"]) == (1, 1)
