"""Exact usage: toward an OpenAI-dialect upstream a stream always asks for usage; a client that
did not ask never sees the usage-only chunk, and is charged what the provider reported.

Pure part (`gateway.exact_usage`) fed whole, line by line and in random splits; the rest
through HTTP with the official openai SDK, raw aiohttp and the mock upstream."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import openai
import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.exact_usage import asking_usage, client_asked, is_usage_only, without_usage_only
from tests.conftest import CLIENT_KEY, Gateway, GatewayFactory, Mock, auth, chat_body

HEAD = b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"the \\"usage\\" word"}}]}\n\n'
FINISH = b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
USAGE = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = HEAD + FINISH + USAGE + DONE


def test_asking_keeps_the_clients_other_stream_options() -> None:
    body = {"model": "m", "stream": True, "stream_options": {"include_obfuscation": False}}
    asked = asking_usage(body)
    assert asked["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert client_asked(asked) and not client_asked(body)
    assert not client_asked({"stream_options": {"include_usage": False}})
    assert body["stream_options"] == {"include_obfuscation": False}  # not changed in place


def test_only_a_usage_only_chunk_is_one() -> None:
    assert is_usage_only(USAGE.strip())
    assert not is_usage_only(HEAD.strip())  # the text says "usage"
    # usage on a chunk that still has choices (some providers send it so) is the answer's
    assert not is_usage_only(b'data: {"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1}}')
    assert not is_usage_only(b'data: {"choices":[],"usage":nul')
    assert not is_usage_only(b": usage")


def test_the_usage_only_event_is_removed_and_nothing_else() -> None:
    assert without_usage_only(STREAM) == (HEAD + FINISH + DONE, False)
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert without_usage_only(crlf)[0] == (HEAD + FINISH + DONE).replace(b"\n", b"\r\n")
    untouched = HEAD + FINISH + DONE
    assert without_usage_only(untouched)[0] is untouched  # no "usage": not even split


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM.splitlines())), max_size=6))
def test_split_at_any_line_the_client_gets_the_same_bytes(cuts: list[int]) -> None:
    lines = STREAM.splitlines(keepends=True)
    bounds = sorted({0, len(lines), *cuts})
    out, after = b"", False
    for start, end in zip(bounds, bounds[1:], strict=False):
        forward, after = without_usage_only(b"".join(lines[start:end]), after)
        out += forward
    assert out == HEAD + FINISH + DONE


# ------------------------------------------------------------------------------ through HTTP

def sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY, max_retries=0)


async def sdk_stream(gateway: Gateway, **extra: Any) -> list[Any]:
    async with sdk(gateway) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "count my tokens"}], stream=True,
            **extra)
        return [chunk async for chunk in stream]


async def test_an_sdk_client_that_never_asked_is_charged_the_reported_usage(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway()
    # What the provider reports for this request (the mock is deterministic): asked for here.
    asked = await sdk_stream(gateway, stream_options={"include_usage": True})
    reported = asked[-1].usage
    assert asked[-1].choices == [] and reported is not None and reported.completion_tokens > 0
    chunks = await sdk_stream(gateway)  # the SDK's default: no stream_options
    # the upstream was asked for usage, the SDK sees no extra chunk
    upstream_body = mock.state.requests[-1].body
    assert upstream_body is not None and upstream_body["stream_options"] == {"include_usage": True}
    assert [c for c in chunks if not c.choices] == []
    assert all(c.usage is None for c in chunks)
    assert len(chunks) == len(asked) - 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(
        c.choices[0].delta.content or "" for c in asked[:-1])
    first, second = gateway.request_logs()
    for line in (first, second):
        assert line["usage_reported"] is True
        assert (line["prompt_tokens"], line["completion_tokens"]) == (
            reported.prompt_tokens, reported.completion_tokens)
    # charged exactly: gpt-4o-mini at the shipped table's $0.15 / $0.60 per 1M tokens
    micros = math.floor(Fraction(reported.prompt_tokens * 15 + reported.completion_tokens * 60, 100)
                        + Fraction(1, 2))
    assert second["cost_usd"] == first["cost_usd"] == micros / 1_000_000


async def raw_stream(gateway: Gateway, path: str, body: dict[str, Any]) -> bytes:
    response = await gateway.client.post(path, json=body, headers=auth())
    assert response.status == 200, await response.text()
    return await response.read()


def data_events(raw: bytes) -> list[Any]:
    return [orjson.loads(line[5:]) for line in raw.splitlines()
            if line.startswith(b"data:") and line != b"data: [DONE]"]


async def test_completions_stream_asks_and_hides_the_usage_chunk(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway()
    body = {"model": "mock-1", "prompt": "hello", "stream": True}
    hidden = await raw_stream(gateway, "/v1/completions", body)
    assert mock.state.requests[-1].body["stream_options"] == {"include_usage": True}  # type: ignore[index]
    shown = await raw_stream(gateway, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
    assert hidden.endswith(b"data: [DONE]\n\n") and shown.endswith(b"data: [DONE]\n\n")
    assert all(event["choices"] for event in data_events(hidden))
    assert data_events(shown)[-1]["choices"] == [] and "usage" in data_events(shown)[-1]
    assert len(data_events(hidden)) == len(data_events(shown)) - 1
    for line in gateway.request_logs():
        assert line["usage_reported"] is True
        assert line["completion_tokens"] == data_events(shown)[-1]["usage"]["completion_tokens"]


async def test_a_client_that_asked_gets_the_bytes_as_they_were(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway()
    body = chat_body("mock-1", stream_options={"include_usage": True})
    raw = await raw_stream(gateway, "/v1/chat/completions", body)
    assert mock.state.requests[-1].body == body  # the client's body went upstream as it was
    assert data_events(raw)[-1]["choices"] == []


async def test_translated_and_simple_routes_settle_on_reported_usage(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway()
    messages = await raw_stream(gateway, "/v1/messages", {
        "model": "mock-1", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert mock.state.requests[-1].body["stream_options"] == {"include_usage": True}  # type: ignore[index]
    assert b'"choices"' not in messages  # the OpenAI chunks were translated, usage chunk included
    simple = await raw_stream(gateway, "/api/chat/stream", chat_body("gpt-4o-mini"))
    assert mock.state.requests[-1].body["stream_options"] == {"include_usage": True}  # type: ignore[index]
    assert b'"usage"' not in simple
    for line in gateway.request_logs():
        assert line["usage_reported"] is True, line


async def test_the_hidden_chunk_is_the_only_change_to_the_upstreams_bytes(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway()
    # The upstream's bytes for what the gateway asks (usage included), CRLF line endings: the
    # client that did not ask gets them all but the usage-only event.
    asked = chat_body("mock-1+crlf", stream_options={"include_usage": True})
    direct = await gateway.client.session.post(f"{mock.url}/v1/chat/completions", json=asked,
                                               headers={"x-request-id": "same"})
    upstream = await direct.read()
    through = await gateway.client.post("/v1/chat/completions", json=chat_body("mock-1+crlf"),
                                        headers={**auth(), "X-Request-ID": "same"})
    got = await through.read()

    def normalise(body: bytes) -> bytes:
        return re.sub(rb'"created": ?\d+', b"T", re.sub(rb"chatcmpl-mock\d+", b"ID", body))

    events = upstream.split(b"\r\n\r\n")
    [usage_only] = [e for e in events if b'"choices":[]' in e.replace(b" ", b"")]
    assert b"\r\n" in got and got.count(b"data:") > 10
    assert normalise(got) == normalise(upstream.replace(usage_only + b"\r\n\r\n", b""))
