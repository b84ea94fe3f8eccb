"""An answer-length field (`max_tokens`, `max_completion_tokens`, `max_output_tokens`) that is
not a positive integer of a sane size is a 400 in the route's shape, before admission: never a
reservation, nor a spend budget's 429, sized by a number no model reaches."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import hash_key
from tests.conftest import CLIENT_KEY, GatewayFactory, Mock, auth, chat_body

PRICES = {"mock-*": {"input": 1.0, "output": 2.0}, "claude-*": {"input": 1.0, "output": 2.0}}
HUGE = 10**26


def budget_tenant() -> list[dict[str, Any]]:
    return [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 5.0}]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/chat/completions", chat_body(stream=False, max_tokens=HUGE), "max_tokens"),
    ("/v1/chat/completions", chat_body(stream=False, max_completion_tokens=-1), "max_completion_tokens"),
    ("/v1/chat/completions", chat_body(stream=False, max_tokens="100"), "max_tokens"),
    ("/v1/chat/completions", chat_body(stream=False, max_tokens=True), "max_tokens"),
    ("/v1/messages", {"model": "claude-3-haiku", "max_tokens": HUGE,
                      "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ("/v1/completions", {"model": "mock-1", "prompt": "hi", "max_tokens": 2**31}, "max_tokens"),
    ("/v1/responses", {"model": "mock-1", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
])
async def test_an_absurd_answer_length_is_a_400_even_with_a_budget(
    start_gateway: GatewayFactory, mock: Mock, path: str, body: dict[str, Any], field: str,
) -> None:
    gateway = await start_gateway(prices=PRICES, tenants=budget_tenant())
    response = await gateway.client.post(path, json=body, headers=auth())
    answer = await response.json()
    assert response.status == 400, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and f"`{field}`" in error["message"]
    assert answer.get("type") == ("error" if path == "/v1/messages" else None)
    assert not mock.state.requests


async def test_the_largest_sane_answer_length_is_admitted(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await start_gateway()
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(stream=False, max_tokens=2**31 - 1), headers=auth())
    assert response.status == 200, await response.text()
    assert mock.state.requests[-1].body is not None
    assert mock.state.requests[-1].body["max_tokens"] == 2**31 - 1


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/responses", {"model": "mock-1", "input": "hi", "max_output_tokens": 100_000}),
    ("/v1/chat/completions", chat_body(stream=False, max_tokens=1, max_completion_tokens=100_000)),
])
async def test_admission_reserves_the_largest_answer_length_given(
    start_gateway: GatewayFactory, mock: Mock, path: str, body: dict[str, Any],
) -> None:
    # A $0.01 budget fits the default answer (4,096 tokens at $2/M) but not 100,000 tokens.
    gateway = await start_gateway(prices=PRICES, tenants=[
        {"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 0.01}])
    response = await gateway.client.post(path, json=body, headers=auth())
    answer = await response.json()
    assert response.status == 429 and answer["error"]["code"] == "insufficient_quota", answer
    assert not mock.state.requests
    fits = await gateway.client.post(
        "/v1/responses", json={"model": "mock-1", "input": "hi", "max_output_tokens": 100}, headers=auth())
    assert fits.status == 200
