"""The built-in mock upstream, through real sockets and the official SDKs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from gateway.mock import MOCK_STATE, Faults, FaultSpecError, MockSettings, parse_faults, start_mock
from tests._mock import CHAT, HELLO, MESSAGES, Mock, chat, openai_text, parse_sse

StartMock = Callable[..., Awaitable[Mock]]


@pytest.fixture
async def start() -> AsyncIterator[StartMock]:
    runners: list[aiohttp.web.AppRunner] = []
    http = aiohttp.ClientSession()

    async def _start(**settings: Any) -> Mock:
        runner, url = await start_mock(settings=MockSettings(**settings))
        runners.append(runner)
        return Mock(url, runner.app[MOCK_STATE], http)

    yield _start
    await http.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def mock(start: StartMock) -> Mock:
    return await start()


# --- the SDKs parse both dialects --------------------------------------------------------


async def test_openai_sdk_streams_the_same_deterministic_answer_as_non_stream(mock: Mock) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k") as client:
        full = await client.chat.completions.create(model="mock-1", messages=HELLO)
        again = await client.chat.completions.create(model="mock-1", messages=HELLO)
        other = await client.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "something else"}]
        )
        stream = await client.chat.completions.create(
            model="mock-1",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            else:
                usage = chunk.usage

    text = full.choices[0].message.content
    assert text and len(text.split()) == 20
    assert again.choices[0].message.content == text
    assert other.choices[0].message.content != text
    assert "".join(pieces) == text
    assert full.usage and full.usage.completion_tokens == 20 and full.usage.prompt_tokens == 3
    assert usage and usage.completion_tokens == 20 and usage.total_tokens == 23
    assert len([p for p in pieces if p]) == 20  # one word per content chunk


async def test_anthropic_sdk_streams_the_same_deterministic_answer_as_non_stream(
    mock: Mock,
) -> None:
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="k") as client:
        full = await client.messages.create(model="mock-1", max_tokens=100, messages=HELLO)
        async with client.messages.stream(
            model="mock-1",
            max_tokens=100,
            messages=HELLO,
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()

    assert full.content[0].type == "text" and full.content[0].text == text
    assert len(text.split()) == 20
    assert full.usage.input_tokens == 3 and full.usage.output_tokens == 20
    assert final.usage.output_tokens == 20 and final.stop_reason == "end_turn"


async def test_openai_stream_has_the_real_chunk_sequence(mock: Mock) -> None:
    events = await mock.events(CHAT, chat(max_completion_tokens=3))
    chunks = [orjson.loads(data) for _, data in events[:-1]]
    assert events[-1] == (None, "[DONE]")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    words = [c["choices"][0]["delta"]["content"] for c in chunks[1:4]]
    assert not words[0].startswith(" ") and all(w.startswith(" ") for w in words[1:])
    assert chunks[4]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",  # max_completion_tokens cut it short
    }
    assert len(chunks) == 5  # no usage chunk without stream_options.include_usage

    with_usage = await mock.events(CHAT, chat(stream_options={"include_usage": True}))
    last = orjson.loads(with_usage[-2][1])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 20


async def test_anthropic_stream_has_the_real_event_sequence(mock: Mock) -> None:
    events = await mock.events(MESSAGES, chat(max_tokens=2))
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [orjson.loads(data) for _, data in events]
    assert all(p["type"] == name for p, (name, _) in zip(payloads, events, strict=True))
    assert payloads[0]["message"]["usage"] == {"input_tokens": 3, "output_tokens": 1}
    assert payloads[6]["usage"] == {"output_tokens": 2}
    assert payloads[6]["delta"]["stop_reason"] == "max_tokens"


async def test_models_and_health(mock: Mock) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k") as client:
        models = [m.id async for m in client.models.list()]
    assert models == ["mock-1"]
    async with mock.http.get(mock.url + "/healthz") as resp:
        assert resp.status == 200


# --- validation and auth -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", {"model": "mock-1"}, {"messages": []}, chat(max_tokens=0)]
)
async def test_bad_requests_get_400_in_the_dialect_shape(mock: Mock, body: Any) -> None:
    async with mock.post(CHAT, body) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    async with mock.post(MESSAGES, body) as resp:
        assert resp.status == 400
        payload = await resp.json()
        assert payload["type"] == "error"
        assert payload["error"]["type"] == "invalid_request_error"


async def test_unknown_fault_directive_is_a_400_naming_it(mock: Mock) -> None:
    async with mock.post(CHAT, chat(), **{"x-mock-fault": "fail=1,explode,drop=x"}) as resp:
        assert resp.status == 400
        message = (await resp.json())["error"]["message"]
    assert "explode" in message and "drop=x" in message and "fail=1" not in message


async def test_api_key_is_checked_in_each_dialects_header(start: StartMock) -> None:
    mock = await start(api_key="sk-mock")
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="mock-1", messages=HELLO)
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="wrong") as aclient:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await aclient.messages.create(model="mock-1", max_tokens=5, messages=HELLO)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid api key"},
    }
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="sk-mock") as client:
        ok = await client.chat.completions.create(model="mock-1", messages=HELLO)
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="sk-mock") as aclient:
        aok = await aclient.messages.create(model="mock-1", max_tokens=5, messages=HELLO)
    assert ok.choices[0].message.content and aok.usage.output_tokens == 5
    async with mock.post(MESSAGES, chat(), **{"x-api-key": "sk-mock"}) as resp:
        assert resp.status == 200  # Anthropic's own header
    async with mock.post(CHAT, chat(), **{"x-api-key": "sk-mock"}) as resp:
        assert resp.status == 401  # OpenAI dialect: Bearer only
    assert mock.state.requests[-1].headers["x-api-key"] == "sk-mock"


# --- faults ------------------------------------------------------------------------------


def test_fault_spec_grammar() -> None:
    faults = parse_faults("fail=2, fail_status=503,retry_after=1.5,silence=0.5@3,crlf,words=4")
    assert faults == Faults(
        fail=2, fail_status=503, retry_after=1.5, silence=(0.5, 3), newline=b"\r\n", words=4
    )
    assert parse_faults("") == Faults()
    assert parse_faults("cr").newline == b"\r"
    for bad in ("nope", "fail", "fail=-1", "status=200", "silence=1", "tps=nan", "hang=1"):
        with pytest.raises(FaultSpecError, match="directive"):
            parse_faults(bad)


async def test_fail_n_fails_each_request_id_n_times_then_succeeds(mock: Mock) -> None:
    body = chat(stream=False, model="mock-1+fail=2,fail_status=503,retry_after=2")
    statuses = []
    for request_id in ("a", "a", "a", "b", "b", "b"):
        async with mock.post(CHAT, body, **{"x-request-id": request_id}) as resp:
            statuses.append(resp.status)
            if resp.status == 503:
                assert resp.headers["Retry-After"] == "2"
                assert (await resp.json())["error"]["type"] == "server_error"
    assert statuses == [503, 503, 200, 503, 503, 200]
    assert [r.request_id for r in mock.state.requests] == ["a", "a", "a", "b", "b", "b"]
    assert mock.state.requests[0].fault == "fail=2,fail_status=503,retry_after=2"


async def test_openai_sdk_retries_through_fail_from_the_model_name(mock: Mock) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=1) as c:
        reply = await c.chat.completions.create(model="mock-1+fail=1", messages=HELLO)
    assert reply.model == "mock-1+fail=1" and reply.choices[0].message.content
    assert len(mock.state.requests) == 2


async def test_status_fault_always_answers_that_status(mock: Mock) -> None:
    for _ in range(2):
        async with mock.post(MESSAGES, chat(), **{"x-mock-fault": "status=429"}) as resp:
            assert resp.status == 429
            assert (await resp.json())["error"]["type"] == "rate_limit_error"
    assert mock.state.streams == []


async def test_drop_aborts_the_connection_after_k_content_chunks(mock: Mock) -> None:
    async with mock.post(CHAT, chat(), **{"x-mock-fault": "drop=3"}) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    record = mock.state.streams[0]
    await record.ended.wait()
    assert record.chunks_sent == 4  # the role chunk and three words
    assert not record.completed and not record.client_closed

    with pytest.raises(aiohttp.ServerDisconnectedError):  # non-stream: no answer at all
        async with mock.post(CHAT, chat(stream=False), **{"x-mock-fault": "drop=0"}):
            pass


async def test_garbage_sends_one_non_json_event_and_ends_normally(mock: Mock) -> None:
    events = await mock.events(CHAT, chat(), **{"x-mock-fault": "garbage=2,words=4"})
    assert events[3] == (None, "}{garbage")
    assert events[-1] == (None, "[DONE]") and len(events) == 1 + 4 + 1 + 1 + 1
    assert mock.state.streams[0].completed


async def test_fragment_writes_events_in_tiny_pieces(mock: Mock) -> None:
    async with mock.post(CHAT, chat(), **{"x-mock-fault": "fragment"}) as resp:
        reads = [piece async for piece in resp.content.iter_any()]
    body = b"".join(reads)
    assert openai_text(parse_sse(body.decode())) == openai_text(await mock.events(CHAT, chat()))
    events = body.count(b"\n\n")
    assert len(reads) > 4 * events  # lines really arrive split across reads
    assert max(len(r) for r in reads) < 100


@pytest.mark.parametrize(("fault", "newline"), [("crlf", b"\r\n"), ("cr", b"\r")])
async def test_line_ending_faults(mock: Mock, fault: str, newline: bytes) -> None:
    async with mock.post(MESSAGES, chat(), **{"x-mock-fault": fault}) as resp:
        body = await resp.read()
    assert body.startswith(b"event: message_start" + newline + b"data: {")
    assert body.endswith(b'data: {"type":"message_stop"}' + newline + newline)
    assert body.replace(b"\r\n", b"").count(b"\n") == 0
    if fault == "cr":
        assert b"\n" not in body


async def test_multiline_payloads_still_parse_with_both_sdks(mock: Mock) -> None:
    fault = {"x-mock-fault": "multiline"}
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k") as client:
        full = await client.chat.completions.create(model="mock-1", messages=HELLO)
        stream = await client.chat.completions.create(
            model="mock-1",
            messages=HELLO,
            stream=True,
            extra_headers=fault,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="k") as aclient:
        async with aclient.messages.stream(
            model="mock-1",
            max_tokens=100,
            messages=HELLO,
            extra_headers=fault,
        ) as astream:
            atext = "".join([t async for t in astream.text_stream])
    assert text == atext == full.choices[0].message.content

    async with mock.post(CHAT, chat(), **fault) as resp:
        first = (await resp.content.readuntil(b"\n\n")).decode()
    assert first.count("\ndata: ") > 2


async def test_silence_pauses_after_k_content_chunks(mock: Mock) -> None:
    events = await mock.events(CHAT, chat(), **{"x-mock-fault": "silence=0.3@2,words=4"})
    assert len(events) == 7
    sent_at = mock.state.streams[0].sent_at
    # sent_at[2] is the second word, sent_at[3] the third
    assert sent_at[3] - sent_at[2] >= 0.29


async def test_tokens_per_second_paces_content_chunks(start: StartMock) -> None:
    mock = await start(tokens_per_second=1000, words=50)
    await mock.events(CHAT, chat(model="mock-1+tps=50,words=6"))
    sent_at = mock.state.streams[0].sent_at
    assert sent_at[6] - sent_at[1] >= 5 / 50 * 0.95  # the fault overrides the setting


async def test_hang_never_sends_headers_until_the_client_leaves(mock: Mock) -> None:
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with mock.http.post(mock.url + CHAT, json=chat(model="mock-1+hang"), timeout=timeout) as resp:
            await resp.read()
    record = mock.state.streams[0]
    await record.ended.wait()
    assert record.client_closed and record.chunks_sent == 0 and record.closed_at is not None


async def test_headers_go_out_at_once_before_the_first_byte_delay(start: StartMock) -> None:
    mock = await start(first_byte_delay=60)
    async with mock.post(CHAT, chat()) as resp:
        assert resp.status == 200
        record = mock.state.streams[0]
        assert record.chunks_sent == 0
    await record.ended.wait()
    assert record.client_closed and not record.completed


async def test_client_disconnect_mid_stream_is_recorded(start: StartMock) -> None:
    mock = await start(tokens_per_second=200, words=10_000)
    async with mock.post(MESSAGES, chat()) as resp:
        await resp.content.readuntil(b"content_block_delta")
    record = mock.state.streams[0]
    await record.ended.wait()
    assert record.client_closed and not record.completed
    assert 0 < record.chunks_sent < 10_000
    assert record.closed_at is not None and record.closed_at >= record.sent_at[-1]


async def test_stats_and_reset_endpoints(mock: Mock) -> None:
    await mock.events(CHAT, chat(), **{"x-request-id": "r1"})
    async with mock.http.get(mock.url + "/_mock/stats") as resp:
        stats = await resp.json()
    assert stats["requests"] == 1
    assert stats["streams"][0]["chunks_sent"] == 23 and stats["streams"][0]["completed"]
    assert stats["streams"][0]["request_id"] == "r1"
    async with mock.http.post(mock.url + "/_mock/reset") as resp:
        assert resp.status == 204
    assert mock.state.requests == [] and mock.state.streams == []
