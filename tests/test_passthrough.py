"""The pass-through routes through HTTP, with the official SDKs as clients and the mock upstream."""

from __future__ import annotations

import re

import anthropic
import openai
import orjson

from tests.conftest import (
    ANTHROPIC_UPSTREAM_KEY,
    CLIENT_KEY,
    CLIENT_KEY_B,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    auth,
    chat_body,
)


def openai_client(gateway: Gateway, key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=key, max_retries=0)


def anthropic_client(gateway: Gateway, key: str = CLIENT_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url(""), api_key=key, max_retries=0)


async def test_openai_sdk_streams_through_the_gateway(gateway: Gateway, mock: Mock) -> None:
    async with openai_client(gateway) as client:
        stream = await client.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "tell me"}], stream=True,
            stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            usage = chunk.usage or usage
    async with openai_client(gateway) as client:
        whole = await client.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "tell me"}])
    assert text and text == whole.choices[0].message.content  # deterministic mock answer
    assert usage is not None and usage.completion_tokens == 12
    (log,) = [line for line in gateway.request_logs() if line["stream"]]
    assert log["completion_tokens"] == 12 and log["usage_reported"] is True
    assert log["outcome"] == "ok" and log["tenant"] == "tenant-a" and log["upstream"] == "mock"


async def test_anthropic_sdk_streams_through_the_gateway(gateway: Gateway, mock: Mock) -> None:
    async with anthropic_client(gateway) as client:
        async with client.messages.stream(
            model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        whole = await client.messages.create(
            model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert text and text == whole.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == 12
    seen = mock.state.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == ANTHROPIC_UPSTREAM_KEY
    assert "anthropic-version" in seen.headers


async def test_anthropic_sdk_with_x_api_key_header(gateway: Gateway, mock: Mock) -> None:
    # The anthropic SDK sends `x-api-key`, never Authorization: the gateway accepts it.
    async with anthropic_client(gateway, CLIENT_KEY_B) as client:
        message = await client.messages.create(
            model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert message.usage.output_tokens == 5
    assert gateway.request_logs()[-1]["tenant"] == "tenant-b"


async def test_client_key_is_swapped_for_the_upstream_key(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers={**auth(), "Cookie": "s=1"})
    await response.read()
    seen = mock.state.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert all(CLIENT_KEY not in value for value in seen.headers.values())
    assert "cookie" not in seen.headers
    assert seen.request_id == response.headers["x-request-id"]


async def test_a_client_key_in_any_credential_header_never_reaches_the_upstream(
    gateway: Gateway, mock: Mock,
) -> None:
    # Azure-style SDKs send `api-key`, Google's `x-goog-api-key`: the gateway key may ride in any
    for model in ("mock-1", "claude-3-haiku"):  # same dialect and translated
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(model=model), headers={
                **auth(), "api-key": CLIENT_KEY, "x-goog-api-key": CLIENT_KEY,
                "Ocp-Apim-Subscription-Key": CLIENT_KEY, "Proxy-Authorization": f"Basic {CLIENT_KEY}"})
        assert response.status == 200, await response.text()
        await response.read()
        seen = mock.state.requests[-1]
        assert all(CLIENT_KEY not in value for value in seen.headers.values()), seen.headers
        assert not {"api-key", "x-goog-api-key", "ocp-apim-subscription-key",
                    "proxy-authorization"} & {name.lower() for name in seen.headers}


async def test_request_body_is_relayed_byte_for_byte(gateway: Gateway, mock: Mock) -> None:
    # A stream whose client did not ask for usage gets `stream_options.include_usage` added
    # (exact usage, see test_exact_usage.py); one that asked goes as it is.
    body = chat_body(temperature=0.25, user="u-1", tools=[], seed=7, stream_options={"include_usage": True})
    response = await gateway.client.post("/v1/chat/completions", json=body, headers=auth())
    await response.read()
    assert mock.state.requests[-1].body == body


async def test_stream_response_headers(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers={**auth(), "X-Request-ID": "req-42",
                                                          "Accept-Encoding": "gzip"})
    await response.read()
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["x-request-id"] == "req-42"
    assert "Content-Encoding" not in response.headers
    for kind in ("requests", "tokens"):
        for field in ("limit", "remaining", "reset"):
            assert f"x-ratelimit-{field}-{kind}" in response.headers


async def test_stream_bytes_equal_upstream_bytes(gateway: Gateway, mock: Mock) -> None:
    # The client asks for usage: nothing is hidden (test_exact_usage.py has the other case).
    body = chat_body("mock-1+crlf,multiline", stream_options={"include_usage": True})
    direct = await gateway.client.session.post(
        f"{mock.url}/v1/chat/completions", json=body, headers={"x-request-id": "same"})
    expected = await direct.read()
    through = await gateway.client.post(
        "/v1/chat/completions", json=body, headers={**auth(), "X-Request-ID": "same"})
    got = await through.read()
    # Only the answer's id and timestamp may differ between the two answers.
    def normalise(body: bytes) -> bytes:
        return re.sub(rb'"created": ?\d+', b"T", re.sub(rb"chatcmpl-mock\d+", b"ID", body))

    assert b"\r\n" in got and got.count(b"data:") > 24
    assert normalise(got) == normalise(expected)


async def test_non_stream_is_json_passthrough(gateway: Gateway, mock: Mock) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(stream=False), headers=auth())
    body = await response.json()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert body["object"] == "chat.completion"
    assert gateway.request_logs()[-1]["completion_tokens"] == body["usage"]["completion_tokens"]


async def test_models_lists_what_the_tenant_may_use(start_gateway: object, mock: Mock) -> None:
    gateway = await start_gateway(tenants=[  # type: ignore[operator]
        {"name": "narrow", "key_sha256": _sha(CLIENT_KEY), "models": ["mock-*"]}])
    response = await gateway.client.get("/v1/models", headers=auth())
    body = await response.json()
    assert response.status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["mock-1"]  # concrete names only, never a glob


async def test_models_with_openai_sdk(gateway: Gateway) -> None:
    async with openai_client(gateway) as client:
        models = await client.models.list()
    assert {m.id for m in models.data} == {"mock-1", "claude-3-haiku"}


def _sha(key: str) -> str:
    from gateway.auth import hash_key

    return hash_key(key)


async def test_health_and_metrics_need_no_key(gateway: Gateway) -> None:
    assert (await gateway.client.get("/healthz")).status == 200
    assert (await gateway.client.get("/readyz")).status == 200
    metrics = await gateway.client.get("/metrics")
    assert metrics.status == 200
    assert "gateway_active_streams" in await metrics.text()


async def test_upstream_error_event_from_mid_stream_is_relayed_as_is(gateway: Gateway) -> None:
    # The gateway doesn't read payloads on pass-through routes: a JSON-garbage data line is
    # the upstream's bytes and reaches the client unchanged.
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+garbage=2"), headers=auth())
    body = await response.read()
    assert b"}{garbage" in body and body.endswith(b"data: [DONE]\n\n")
    assert orjson.loads(body.split(b"\n\n")[0][6:])["object"] == "chat.completion.chunk"
