"""`/readyz` through HTTP: 503 once every upstream refused the gateway's credentials on its
last attempt (mock `status=401` / `status=403`), ready again after a later success."""

from __future__ import annotations

from typing import Any

from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body

FAST = {"first_byte_timeout_seconds": 2, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.5,
        "max_retries": 1}


async def _start(start_gateway: GatewayFactory, mock: Mock) -> Gateway:
    common = {"dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY", **FAST}
    return await start_gateway(
        upstreams=[{"name": "a", **common}, {"name": "b", **common}],
        routes=[{"model": "both-refuse", "targets": ["a:m1+status=401", "b:m2+status=403"]},
                {"model": "a-refuses", "targets": ["a:m1+status=401"]},
                {"model": "a-works", "targets": ["a:m1"]}])


async def _chat(gateway: Gateway, model: str) -> int:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(model, stream=False), headers=auth())
    await response.read()
    return response.status


async def _ready(gateway: Gateway) -> tuple[int, Any]:
    response = await gateway.client.get("/readyz")
    return response.status, await response.json()


async def test_readyz_is_503_when_every_upstream_refused_our_key_and_a_success_clears_it(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock)
    assert await _ready(gateway) == (200, {"status": "ready"})
    assert await _chat(gateway, "both-refuse") == 502
    assert gateway.request_logs()[-1]["attempts"][0]["outcome"] == "refused"
    assert await _ready(gateway) == (503, {"status": "upstream credentials refused"})
    assert await _chat(gateway, "a-works") == 200
    assert await _ready(gateway) == (200, {"status": "ready"})


async def test_readyz_stays_ready_while_one_upstream_still_takes_our_key(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock)
    assert await _chat(gateway, "a-refuses") == 502
    assert await _ready(gateway) == (200, {"status": "ready"})
