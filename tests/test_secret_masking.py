"""Issue 23.2: an upstream that echoes the key it was sent in an error event mid-stream (after
one chunk) must not leak it: not to the client, passed through or translated, on every
streaming route, and not to the log line's `error` field (or anywhere in the log)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.upstream.mask import StreamMask, mask_secrets
from tests._scripted import (
    Script,
    Scripted,
    anthropic_start,
    anthropic_text,
    chat_chunk,
    responses_event,
    scripted,
    sse,
)
from tests.conftest import ANTHROPIC_UPSTREAM_KEY, UPSTREAM_KEY, Gateway, GatewayFactory, auth, chat_body

#: what must never be seen: the secret part of each upstream key
SECRETS = (UPSTREAM_KEY.removeprefix("sk-"), ANTHROPIC_UPSTREAM_KEY.removeprefix("sk-ant-"))


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    async with scripted({}) as found:
        yield found


def _openai_echo(where: str) -> list[bytes]:
    return [chat_chunk("Hi", role=True),
            sse({"error": {"message": f"bad key: {where}", "type": "invalid_request_error"}})]


def _anthropic_echo(where: str) -> list[bytes]:
    return [anthropic_start(), anthropic_text("Hi"),
            sse({"type": "error", "error": {"type": "api_error", "message": f"bad key: {where}"}}, "error")]


def _responses_echo(where: str) -> list[bytes]:
    return [responses_event("response.created", 0, response={"id": "r1"}),
            responses_event("response.output_text.delta", 1, delta="Hi"),
            sse({"type": "error", "code": "bad_key", "message": f"bad key: {where}", "param": None,
                 "sequence_number": 2}, "error")]


async def _gateway(start_gateway: GatewayFactory, standin: Scripted, target: str) -> Gateway:
    fast = {"max_retries": 0, "failures_to_trip": 0}
    return await start_gateway(upstreams=[
        {"name": "s", "dialect": "openai", "base_url": f"{standin.url}/v1", "api_key_env": "MOCK_OPENAI_KEY",
         **fast},
        {"name": "sa", "dialect": "anthropic", "base_url": standin.url, "api_key_env": "MOCK_ANTHROPIC_KEY",
         **fast},
    ], routes=[{"model": "chat", "targets": [target]}])


MESSAGES = {"model": "chat", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
CASES = [  # (route, target, upstream's stream, body)
    ("/v1/chat/completions", "s:m", _openai_echo, chat_body("chat")),
    ("/v1/chat/completions", "sa:m", _anthropic_echo, chat_body("chat")),  # translated
    ("/v1/messages", "sa:m", _anthropic_echo, MESSAGES),
    ("/v1/messages", "s:m", _openai_echo, MESSAGES),  # translated
    ("/v1/responses", "s:m", _responses_echo, {"model": "chat", "input": "hi", "stream": True}),
    ("/v1/responses", "sa:m", _anthropic_echo, {"model": "chat", "input": "hi", "stream": True}),  # translated
    ("/api/chat/stream", "s:m", _openai_echo, chat_body("chat")),
    ("/api/chat/stream", "sa:m", _anthropic_echo, chat_body("chat")),
]


@pytest.mark.parametrize("echoed", ["{key}", "x-api-key: {key}", "Authorization: {key}", "raw={key}"])
@pytest.mark.parametrize(("path", "target", "stream", "body"), CASES)
async def test_a_key_echoed_in_an_error_event_mid_stream_is_masked_everywhere(
    start_gateway: GatewayFactory, upstream: Scripted, path: str, target: str, stream: Any,
    body: dict[str, Any], echoed: str,
) -> None:
    upstream.scripts["m"] = Script(stream(echoed), echo=True)
    gateway = await _gateway(start_gateway, upstream, target)
    response = await gateway.client.post(path, json=body, headers=auth())
    answer = await response.read()
    assert response.status == 200
    assert upstream.seen and all(s.headers.get("authorization", s.headers.get("x-api-key"))
                                 for s in upstream.seen)  # the upstream did get the key to echo
    log = gateway.log.getvalue()
    for secret in SECRETS:
        assert secret not in answer.decode(), answer
        assert secret not in log
    assert b"bad key" in answer  # the upstream's error still reaches the client, masked
    line = gateway.request_logs()[-1]
    assert line["outcome"] == "upstream_error" and line["error"]


async def test_the_key_in_an_ordinary_chunk_is_masked_too(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hi {key}", role=True), chat_chunk(finish="stop"), sse("[DONE]")],
                                   echo=True)
    gateway = await _gateway(start_gateway, upstream, "s:m")
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
    answer = await response.read()
    assert SECRETS[0] not in answer.decode()
    assert gateway.request_logs()[-1]["outcome"] == "ok"


def test_the_stream_mask_masks_the_key_in_events_and_every_key_pattern_in_errors() -> None:
    mask = StreamMask([UPSTREAM_KEY])
    plain = b'data: {"t": "use sk-abcdefghijklmnopqrstuvwx in code"}\n\n'
    assert mask.events(plain) is plain  # model text about keys is text
    assert SECRETS[0].encode() not in mask.events(b"data: " + UPSTREAM_KEY.encode() + b"\n\n")
    error = b'data: {"error": {"message": "x-api-key: tok_abcdefghijklmnop1234 Bearer zzzzzzzzzzzzzzzzzzzz"}}\n\n'
    assert mask.errors(error) == mask_secrets(error)
    assert b"tok_abcdefghijklmnop1234" not in mask.errors(error)
    assert mask.text(f"bad key {UPSTREAM_KEY}") == "bad key sk-ups...6789"
    assert orjson.loads(mask.errors(b'{"m": "x-api-key: sk-ant-abcdefghijklmnopqrstuvwxyz"}'))
