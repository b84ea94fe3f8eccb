"""Black-box review of `x-gateway-tags`: the gateway's own label for spend rows and the log
line stays in the gateway. It went upstream with the client's other headers, so a tag such as
`customer:acme` reached the provider. Checked with a stand-in provider that records what it
was sent, on a pass-through route and a translated one, through real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests._scripted import (
    ANTHROPIC_END,
    Script,
    Scripted,
    anthropic_finish,
    anthropic_start,
    anthropic_text,
    chat_chunk,
    scripted,
)
from tests.conftest import GatewayFactory, auth, chat_body

USAGE = {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


@pytest.fixture
async def provider() -> AsyncIterator[Scripted]:
    scripts = {
        "o": Script([chat_chunk("hi", role=True), chat_chunk(finish="stop"), chat_chunk(usage=USAGE),
                     b"data: [DONE]\n\n"]),
        "a": Script([anthropic_start(), anthropic_text("hi"), anthropic_finish(), ANTHROPIC_END]),
    }
    async with scripted(scripts) as found:
        yield found


@pytest.mark.parametrize(("path", "model"), [
    ("/v1/chat/completions", "o"), ("/v1/chat/completions", "a"), ("/api/chat/stream", "o"),
])
async def test_the_tags_header_never_reaches_the_provider(
        start_gateway: GatewayFactory, provider: Scripted, path: str, model: str) -> None:
    upstreams = [
        {"name": "s", "dialect": "openai", "base_url": f"{provider.url}/v1", "api_key_env": "MOCK_OPENAI_KEY",
         "models": ["o"], "max_retries": 0},
        {"name": "sa", "dialect": "anthropic", "base_url": provider.url, "api_key_env": "MOCK_ANTHROPIC_KEY",
         "models": ["a"], "max_retries": 0},
    ]
    gateway = await start_gateway(upstreams=upstreams)
    response = await gateway.client.post(
        path, json=chat_body(model), headers={**auth(), "x-gateway-tags": "customer:acme,beta", "x-other": "kept"})
    body = await response.read()
    assert response.status == 200, body
    [asked] = provider.asked(model)
    assert "x-gateway-tags" not in asked.headers
    assert asked.headers.get("x-other") == "kept"  # other client headers still pass
    [line] = gateway.request_logs()
    assert sorted(line["tags"]) == ["beta", "customer:acme"]  # still the gateway's to log
