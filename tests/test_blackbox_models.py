"""Black-box review of `GET /v1/models/{id}`: a model name with a `/` (OpenRouter's
`vendor/model`, Groq's `openai/gpt-oss-*`, vLLM's `meta-llama/...`, all in the README's
provider blocks) is retrievable whether the client sends the slash as it is (curl, older SDKs)
or percent-encoded (the current openai SDK), through real sockets; it was a bare 404."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway, GatewayFactory, Mock, auth

NAME = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
async def slashed(start_gateway: GatewayFactory, mock: Mock) -> Gateway:
    upstream = {"name": "vllm", "dialect": "openai", "base_url": f"{mock.url}/v1",
                "api_key_env": "MOCK_OPENAI_KEY", "models": [NAME, "openai/gpt-oss-*"]}
    return await start_gateway(upstreams=[upstream])


@pytest.mark.parametrize("path", [f"/v1/models/{NAME}", "/v1/models/meta-llama%2FLlama-3.1-8B-Instruct",
                                  "/v1/models/openai/gpt-oss-20b"])
@pytest.mark.parametrize("anthropic", [False, True])
async def test_a_model_name_with_a_slash_is_retrievable(slashed: Gateway, path: str, anthropic: bool) -> None:
    headers: dict[str, Any] = {**auth(), **({"anthropic-version": "2023-06-01"} if anthropic else {})}
    response = await slashed.client.get(path, headers=headers, allow_redirects=False)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["id"] in (NAME, "openai/gpt-oss-20b")
    assert body["type" if anthropic else "object"] == "model"


async def test_an_unroutable_name_with_a_slash_is_still_404_in_the_shape(slashed: Gateway) -> None:
    response = await slashed.client.get("/v1/models/other/model", headers=auth())
    assert response.status == 404
    assert "other/model" in (await response.json())["error"]["message"]
    response = await slashed.client.get("/v1/models/other/model",
                                        headers={**auth(), "anthropic-version": "2023-06-01"})
    assert (await response.json())["error"]["type"] == "not_found_error"


async def test_the_list_route_is_unchanged(slashed: Gateway) -> None:
    response = await slashed.client.get("/v1/models", headers=auth())
    assert response.status == 200
    assert NAME in [entry["id"] for entry in (await response.json())["data"]]
    assert (await slashed.client.get("/v1/models/", headers=auth())).status == 404
