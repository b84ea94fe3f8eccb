"""Black-box review: a refusal names the model the client sent, but not all of it. A 404 for a
100 kB model name answered those 100 kB back (the models route already cut a glob at 200
characters); now every refusal that names a model quotes at most its first 200 characters,
in each route's shape, through real sockets."""

from __future__ import annotations

import pytest

from gateway.auth import hash_key
from tests.conftest import CLIENT_KEY, Gateway, GatewayFactory, auth

LONG = "m" * 100_000


@pytest.mark.parametrize(("path", "body", "headers"), [
    ("/v1/chat/completions", {"model": LONG, "messages": [{"role": "user", "content": "hi"}]}, {}),
    ("/v1/messages", {"model": LONG, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
     {"anthropic-version": "2023-06-01"}),
    ("/api/chat/stream", {"model": LONG, "messages": [{"role": "user", "content": "hi"}]}, {}),
    ("/v1/embeddings", {"model": LONG, "input": "hi"}, {}),
])
async def test_a_refusal_quotes_at_most_200_characters_of_the_model(
        gateway: Gateway, path: str, body: dict[str, object], headers: dict[str, str]) -> None:
    response = await gateway.client.post(path, json=body, headers={**auth(), **headers})
    text = await response.text()
    assert response.status == 404, text[:300]
    assert "m" * 200 in text and "m" * 201 not in text
    assert len(text) < 1000


async def test_an_unpriced_refusal_too(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=[{"name": "capped", "key_sha256": hash_key(CLIENT_KEY),
                                            "budget_usd": 1.0}])
    model = "mock-" + LONG
    response = await gateway.client.post("/v1/chat/completions", headers=auth(),
                                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    text = await response.text()
    assert response.status == 403, text[:300]
    assert (await response.json())["error"]["code"] == "model_unpriced"
    assert len(text) < 1000
