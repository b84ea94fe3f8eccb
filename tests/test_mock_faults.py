"""The mock's newer fault directives and prefill continuation, through real sockets and the SDKs."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mock import Faults, FaultSpecError, parse_faults
from gateway.mock.answers import Ask, Conversation, answer_words, build_answer, word_pieces
from tests._mock import CHAT, HELLO, MESSAGES, Mock, chat, openai_text, running_mock
from tests._proc import eventually


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    async with running_mock(words=8) as m:
        yield m


async def full_text(mock: Mock, messages: Any = HELLO) -> str:
    async with mock.post(CHAT, chat(stream=False, messages=messages)) as resp:
        text: str = (await resp.json())["choices"][0]["message"]["content"]
    return text


# --- grammar -----------------------------------------------------------------------------


def test_new_directives_parse() -> None:
    spec = "context_overflow,content_filter,no_prefill,noend,retry_after_date,down_for=2.5,echo_key,html,big=1000,gzip,drip=0.5,text_then_tool,tools=2"
    assert parse_faults(spec) == Faults(
        context_overflow=True,
        content_filter=True,
        no_prefill=True,
        noend=True,
        retry_after_date=True,
        down_for=2.5,
        echo_key=True,
        html=True,
        big=1000,
        gzip=True,
        drip=0.5,
        text_then_tool=True,
        tools=2,
    )
    assert parse_faults("tool").tools == 1 and parse_faults("text_then_tool").tools == 1
    assert parse_faults("stall=1.5@3") == parse_faults("silence=1.5@3") == Faults(silence=(1.5, 3))
    for bad in ("tools=0", "tool=1", "drip=0", "drip", "big=-1", "down_for=x", "stall=1", "noend=1", "gzip=yes"):
        with pytest.raises(FaultSpecError, match="directive"):
            parse_faults(bad)


# --- prefill -----------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=200), st.text(alphabet="abc ", max_size=6))
def test_prefill_continuation_gives_the_full_answer_exactly_once(cut: int, other: str) -> None:
    user = {"role": "user", "content": "tell me"}
    full = "".join(word_pieces(answer_words("tell me", 30)))
    prefill = full[: max(1, cut)]
    ask = Ask(words=30, cap=None)
    answer = build_answer(Conversation([user, {"role": "assistant", "content": prefill}]), "m", "id", ask)
    assert prefill + answer.text == full
    assert answer.completion_tokens == len(answer.pieces) and all(answer.pieces)
    if other and not full.startswith(other):  # not a prefix: the full answer again
        again = build_answer(Conversation([user, {"role": "assistant", "content": other}]), "m", "id", ask)
        assert again.text == full


async def test_openai_prefill_streams_only_the_rest(mock: Mock) -> None:
    full = await full_text(mock)
    for cut in (len(full.split()[0]) + 1, 5, len(full)):  # after a word, inside a word, all of it
        messages = [*HELLO, {"role": "assistant", "content": full[:cut]}]
        events = await mock.events(CHAT, chat(messages=messages, stream_options={"include_usage": True}))
        rest = openai_text(events)
        assert full[:cut] + rest == full
        usage = orjson.loads(events[-2][1])["usage"]
        pieces = [orjson.loads(d)["choices"] for _, d in events[1:-3]]
        assert usage["completion_tokens"] == len(pieces) == (len(rest.split(" ")) if rest else 0)
    other = await mock.events(CHAT, chat(messages=[*HELLO, {"role": "assistant", "content": "nope"}]))
    assert openai_text(other) == full


async def test_anthropic_prefill_with_content_blocks_via_the_sdk(mock: Mock) -> None:
    full = await full_text(mock)
    prefill: Any = {"role": "assistant", "content": [{"type": "text", "text": full[:7]}]}
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="k") as client:
        async with client.messages.stream(model="mock-1", max_tokens=100, messages=[*HELLO, prefill]) as stream:
            rest = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
    assert full[:7] + rest == full
    assert final.usage.output_tokens == len(rest.split(" "))


async def test_no_prefill_refuses_a_trailing_assistant_message(mock: Mock) -> None:
    messages = [*HELLO, {"role": "assistant", "content": "the"}]
    async with mock.post(MESSAGES, chat(messages=messages), **{"x-mock-fault": "no_prefill"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and "prefill not supported" in error["message"]
    async with mock.post(MESSAGES, chat(stream=False), **{"x-mock-fault": "no_prefill"}) as resp:
        assert resp.status == 200


# --- provider errors ---------------------------------------------------------------------


async def test_context_overflow_in_each_providers_words(mock: Mock) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k") as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="mock-1+context_overflow", messages=HELLO)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert error["message"].startswith("This model's maximum context length is ")
    async with mock.post(MESSAGES, chat(model="m+context_overflow")) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"},
        }


async def test_content_filter(mock: Mock) -> None:
    async with mock.post(CHAT, chat(model="m+content_filter")) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["code"] == "content_filter" and error["type"] == "invalid_request_error"
    async with mock.post(MESSAGES, chat(model="m+content_filter")) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and "policy" in error["message"]


async def test_echo_key_puts_the_received_credentials_in_the_error(mock: Mock) -> None:
    headers = {"Authorization": "Bearer sk-upstream-secret", "x-mock-fault": "echo_key"}
    async with mock.post(CHAT, chat(), **headers) as resp:
        assert resp.status == 400
        message = (await resp.json())["error"]["message"]
    assert message == "Incorrect API key provided: Authorization: Bearer sk-upstream-secret"
    async with mock.post(MESSAGES, chat(model="m+echo_key"), **{"x-api-key": "sk-ant-secret"}) as resp:
        assert (await resp.json())["error"]["message"] == "Incorrect API key provided: x-api-key: sk-ant-secret"


async def test_retry_after_as_an_http_date(mock: Mock) -> None:
    before = time.time()
    async with mock.post(CHAT, chat(model="m+status=503,retry_after=30,retry_after_date")) as resp:
        assert resp.status == 503
        when = email.utils.parsedate_to_datetime(resp.headers["Retry-After"]).timestamp()
    assert before + 29 <= when <= time.time() + 31
    async with mock.post(CHAT, chat(model="m+fail=1,retry_after_date")) as resp:
        assert resp.status == 500
        assert email.utils.parsedate_to_datetime(resp.headers["Retry-After"]).tzinfo is not None


async def test_down_for_fails_every_request_until_seconds_after_the_first(mock: Mock) -> None:
    body = chat(stream=False, model="m+down_for=0.4,fail_status=503")
    started = time.monotonic()
    statuses = []
    for request_id in ("a", "b"):  # the request id does not matter, only the spec
        async with mock.post(CHAT, body, **{"x-request-id": request_id}) as resp:
            statuses.append(resp.status)
    async with mock.post(CHAT, chat(stream=False, model="m+down_for=0")) as resp:
        assert resp.status == 200  # another spec, another clock
    assert statuses[0] == 503

    async def recovered() -> bool:  # polling: the mock's recovery is a point in time
        async with mock.post(CHAT, body) as resp:
            assert resp.status in (200, 503)
            return resp.status == 200

    await eventually(recovered, timeout=10, interval=0.05, what="the mock answering again")
    assert time.monotonic() - started >= 0.4


# --- odd bodies --------------------------------------------------------------------------


async def test_noend_ends_the_stream_cleanly_without_the_end_marker(mock: Mock) -> None:
    events = await mock.events(CHAT, chat(model="m+noend"))
    assert orjson.loads(events[-1][1])["choices"][0]["finish_reason"] == "stop"
    assert all(data != "[DONE]" for _, data in events) and len(events) == 10
    names = [name for name, _ in await mock.events(MESSAGES, chat(model="m+noend"))]
    assert names[-1] == "message_delta" and len(names) == 13
    assert all(record.completed for record in mock.state.streams)


async def test_html_is_a_200_error_page(mock: Mock) -> None:
    for stream in (True, False):
        async with mock.post(CHAT, chat(stream=stream, model="m+html")) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert (await resp.read()).startswith(b"<html>")


async def test_big_pads_a_non_stream_answer(mock: Mock) -> None:
    plain = await (await mock.post(CHAT, chat(stream=False))).json()
    async with mock.post(CHAT, chat(stream=False, model="mock-1+big=200000")) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Length"] == str(len(raw))
    body = orjson.loads(raw)
    assert len(raw) == 200_000 and body["choices"] == plain["choices"]
    assert set(body.pop("mock_padding")) == {"x"}


async def test_gzip_with_big_is_a_small_body_that_expands_hugely(mock: Mock) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        body = chat(stream=False, model="mock-1+gzip,big=20000000")
        async with http.post(mock.url + CHAT, data=orjson.dumps(body)) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            packed = await resp.read()
    unpacked = gzip.decompress(packed)
    assert len(packed) < 100_000 and len(unpacked) == 20_000_000
    assert orjson.loads(unpacked)["object"] == "chat.completion"
    async with mock.post(MESSAGES, chat(stream=False, model="m+gzip")) as resp:  # decoded by aiohttp
        assert resp.headers["Content-Encoding"] == "gzip" and (await resp.json())["type"] == "message"


@pytest.mark.parametrize("stream", [True, False])
async def test_drip_sends_one_byte_at_a_time_and_never_a_newline(mock: Mock, stream: bool) -> None:
    async with mock.post(CHAT, chat(stream=stream, model="m+drip=0.01")) as resp:
        assert resp.status == 200
        received = b""
        while len(received) < 20:
            received += await asyncio.wait_for(resp.content.readany(), timeout=5)
    assert b"\n" not in received and b"\r" not in received
    assert received.startswith(b'data: {"drip":"x' if stream else b'{"drip":"xxxxxxxxxx')
    record = mock.state.streams[-1]
    await asyncio.wait_for(record.ended.wait(), timeout=5)
    assert record.client_closed and record.chunks_sent >= 20 and not record.completed


# --- memory bound ------------------------------------------------------------------------


async def test_the_state_keeps_only_the_last_max_records() -> None:
    async with running_mock(words=2, max_records=3) as mock:
        for i in range(5):
            await mock.events(CHAT, chat(model="m+fail=0"), **{"x-request-id": f"r{i}"})
            async with mock.post(CHAT, chat(stream=False, model="m+fail=1"), **{"x-request-id": f"f{i}"}) as resp:
                assert resp.status == 500
        state = mock.state
        assert [r.request_id for r in state.requests] == ["f3", "r4", "f4"]
        assert [s.request_id for s in state.streams] == ["r2", "r3", "r4"]
        assert [request_id for _, request_id in state.attempts] == ["f2", "f3", "f4"]
        assert state.served == 10
        body = await (await mock.post(CHAT, chat(stream=False))).json()
        assert body["id"] == "chatcmpl-mock000011"  # ids keep counting past the bound
