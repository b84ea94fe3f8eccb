"""What admission reserves (tokens and spend budget) for a request's worst case, through HTTP:
`n` and `best_of` multiply the answer (and are bounded), the `on_context_overflow` route's
targets are priced, count_tokens costs nothing and embeddings cost their input only."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import hash_key
from gateway.body import MAX_CHOICES
from tests.conftest import CLIENT_KEY, GatewayFactory, Mock, auth, chat_body

PRICES = {"mock-*": {"input": 1.0, "output": 2.0}, "claude-*": {"input": 1.0, "output": 2.0},
          "cheap-*": {"input": 0.01, "output": 0.01}, "dear-*": {"input": 100.0, "output": 100.0}}


def tenant(**limits: Any) -> list[dict[str, Any]]:
    return [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), **limits}]


async def post(gateway: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    response = await gateway.client.post(path, json=body, headers=auth())
    return response.status, await response.json(), response.headers


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", chat_body(stream=False, max_tokens=4000, n=128)),
    ("/v1/completions", {"model": "mock-1", "prompt": "hi", "max_tokens": 4000, "best_of": 128}),
    ("/v1/completions", {"model": "mock-1", "prompt": "hi", "max_tokens": 4000, "n": 64, "best_of": 100}),
])
async def test_many_answers_are_many_worst_cases_for_the_budget(
        start_gateway: GatewayFactory, mock: Mock, path: str, body: dict[str, Any]) -> None:
    # $0.05 fits one answer of 4,000 tokens at $2/M ($0.008), not 100 or 128 of them.
    gateway = await start_gateway(prices=PRICES, tenants=tenant(budget_usd=0.05))
    status, answer, _ = await post(gateway, path, body)
    assert status == 429 and answer["error"]["code"] == "insufficient_quota", answer
    assert not mock.state.requests
    one = {k: v for k, v in body.items() if k not in ("n", "best_of")}
    status, answer, _ = await post(gateway, path, one)
    assert status == 200, answer


async def test_n_multiplies_the_token_reservation(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=tenant(tokens_per_minute=1_000_000))
    _, _, once = await post(gateway, "/v1/chat/completions", chat_body(stream=False, max_tokens=10_000))
    once_left = int(once["x-ratelimit-remaining-tokens"])
    gateway = await start_gateway(tenants=tenant(tokens_per_minute=1_000_000))
    status, answer, ten = await post(gateway, "/v1/chat/completions",
                                     chat_body(stream=False, max_tokens=10_000, n=10))
    assert status == 200, answer
    # the same prompt (one byte longer for `"n":10`, the estimate is bytes / 4)
    assert once_left - int(ten["x-ratelimit-remaining-tokens"]) in range(90_000, 90_004)


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/chat/completions", chat_body(stream=False, n=MAX_CHOICES + 1), "n"),
    ("/v1/chat/completions", chat_body(stream=False, n=0), "n"),
    ("/v1/chat/completions", chat_body(stream=False, n="2"), "n"),
    ("/v1/completions", {"model": "mock-1", "prompt": "hi", "best_of": 10**9}, "best_of"),
    ("/v1/completions", {"model": "mock-1", "prompt": "hi", "n": True}, "n"),
])
async def test_a_number_of_answers_over_the_bound_is_a_400(
        start_gateway: GatewayFactory, mock: Mock, path: str, body: dict[str, Any], field: str) -> None:
    gateway = await start_gateway(prices=PRICES, tenants=tenant(budget_usd=5.0))
    status, answer, _ = await post(gateway, path, body)
    assert status == 400, answer
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"] == (
        f"`{field}` must be a positive integer no larger than {MAX_CHOICES}")
    assert not mock.state.requests


async def test_the_largest_number_of_answers_is_admitted(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await start_gateway()
    status, answer, _ = await post(gateway, "/v1/chat/completions", chat_body(stream=False, n=MAX_CHOICES))
    assert status == 200, answer


OVERFLOW_ROUTES = [
    {"model": "chat-cheap", "targets": ["mock:cheap-1"], "on_context_overflow": "chat-dear"},
    {"model": "chat-dear", "targets": ["mock:dear-1"]},
    {"model": "chat-cheap-alone", "targets": ["mock:cheap-1"]},
]


async def test_the_overflow_routes_targets_price_the_worst_case(
        start_gateway: GatewayFactory, mock: Mock) -> None:
    # 4,096 answer tokens: $0.00004 at the cheap price, $0.41 at the overflow route's dear one.
    gateway = await start_gateway(prices=PRICES, routes=OVERFLOW_ROUTES, tenants=tenant(budget_usd=0.05))
    status, answer, _ = await post(gateway, "/v1/chat/completions", chat_body("chat-cheap", stream=False))
    assert status == 429 and answer["error"]["code"] == "insufficient_quota", answer
    assert not mock.state.requests
    status, answer, _ = await post(gateway, "/v1/chat/completions",
                                   chat_body("chat-cheap-alone", stream=False))
    assert status == 200, answer


async def test_an_unpriced_overflow_target_is_refused_to_a_budget(start_gateway: GatewayFactory) -> None:
    routes = [{"model": "chat-cheap", "targets": ["mock:cheap-1"], "on_context_overflow": "chat-x"},
              {"model": "chat-x", "targets": ["mock:unpriced-1"]}]
    gateway = await start_gateway(prices=PRICES, routes=routes, tenants=tenant(budget_usd=5.0))
    status, answer, _ = await post(gateway, "/v1/chat/completions", chat_body("chat-cheap", stream=False))
    assert status == 403 and answer["error"]["code"] == "model_unpriced", answer


async def test_count_tokens_is_admitted_whatever_the_budget(start_gateway: GatewayFactory) -> None:
    # $0.0001 does not fit a 4,096-token answer at $2/M ($0.008); count_tokens answers none.
    gateway = await start_gateway(prices=PRICES, tenants=tenant(budget_usd=0.0001))
    body = {"model": "claude-3-haiku", "messages": [{"role": "user", "content": "hi"}]}
    status, answer, _ = await post(gateway, "/v1/messages/count_tokens", body)
    assert status == 200, answer
    assert isinstance(answer["input_tokens"], int)
    status, answer, _ = await post(gateway, "/v1/messages", {**body, "max_tokens": 100})
    assert status == 429, answer  # a real generation is refused by that budget


async def test_embeddings_reserve_their_input_only(start_gateway: GatewayFactory) -> None:
    # $0.005 is less than 4,096 answer tokens at $2/M, more than the input's worth.
    gateway = await start_gateway(prices=PRICES, tenants=tenant(budget_usd=0.005, tokens_per_minute=100_000))
    body = {"model": "mock-1", "input": "hello there"}
    status, answer, headers = await post(gateway, "/v1/embeddings", body)
    assert status == 200, answer
    prompt_estimate = len(b'{"model":"mock-1","input":"hello there"}') // 4
    assert int(headers["x-ratelimit-remaining-tokens"]) == 100_000 - prompt_estimate
