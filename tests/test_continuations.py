"""Issue 22.2: continuations after a cut mid-stream, through HTTP with a scripted stand-in
upstream (tests/_scripted.py): the cut target itself continues when it supports prefill; a
continuation a target refuses moves on to the next one and the target is remembered as
refusing; the client's final error names the first cause, never the refusal; and resume
works on every streaming route (chat completions, messages, responses with consecutive
sequence numbers, completions, the simple events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest

from gateway.sse import EventParser
from tests._scripted import (
    ANTHROPIC_END,
    Script,
    Scripted,
    anthropic_finish,
    anthropic_start,
    anthropic_text,
    chat_chunk,
    responses_event,
    scripted,
    sse,
)
from tests.conftest import CLIENT_KEY, Gateway, GatewayFactory, auth, chat_body

REFUSE = Script([b'{"error": {"message": "prefill not supported: the conversation must end with a user message",'
                 b' "type": "invalid_request_error"}}'], status=400)


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    async with scripted({}) as found:
        yield found


def _upstream(standin: Scripted, name: str, dialect: str = "openai", prefill: bool = True) -> dict[str, Any]:
    base = f"{standin.url}/v1" if dialect == "openai" else standin.url
    key = "MOCK_OPENAI_KEY" if dialect == "openai" else "MOCK_ANTHROPIC_KEY"
    return {"name": name, "dialect": dialect, "base_url": base, "api_key_env": key, "max_retries": 0,
            "failures_to_trip": 0, "supports_prefill": prefill, "backoff_base_seconds": 0.01}


async def _gateway(start_gateway: GatewayFactory, standin: Scripted, targets: list[str]) -> Gateway:
    return await start_gateway(
        upstreams=[_upstream(standin, "s", prefill=False), _upstream(standin, "sp"),
                   _upstream(standin, "sa", "anthropic"), _upstream(standin, "sr"), _upstream(standin, "sr2")],
        routes=[{"model": "chat", "targets": targets, "resume_midstream": True}])


def _events(body: bytes) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in EventParser().feed(body)]


def _chat_text(events: list[tuple[str, str]]) -> str:
    out = []
    for _, data in events:
        if data == "[DONE]":
            continue
        choices = orjson.loads(data).get("choices") or [{}]
        out.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(out)


async def _recoveries(gateway: Gateway, result: str) -> float:
    try:
        return await gateway.metric("gateway_midstream_recoveries_total", result=result)
    except AssertionError:
        return 0.0


async def test_the_cut_target_itself_continues_when_it_supports_prefill(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hello ", role=True)], end="abort")
    upstream.scripts["m#cont"] = Script([chat_chunk("world", role=True), chat_chunk(finish="stop"), sse("[DONE]")])
    gateway = await _gateway(start_gateway, upstream, ["sp:m"])  # one target: only itself
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
    events = _events(await response.read())
    assert _chat_text(events) == "Hello world" and events[-1] == ("message", "[DONE]")
    (cont,) = [a for a in upstream.asked("m") if a.continuation]
    assert cont.body["messages"][-1] == {"role": "assistant", "content": "Hello "}
    assert [(a["upstream"], a["outcome"]) for a in gateway.request_logs()[-1]["attempts"]] == [
        ("sp", "cut"), ("sp", "ok")]
    assert await _recoveries(gateway, "ok") == 1


async def test_a_refused_continuation_moves_on_and_the_refuser_is_remembered(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hello ", role=True)], end="abort")
    upstream.scripts["r"] = Script([chat_chunk("unused")])
    upstream.scripts["r#cont"] = REFUSE
    upstream.scripts["ok"] = Script([chat_chunk("unused")])
    upstream.scripts["ok#cont"] = Script([chat_chunk("world"), chat_chunk(finish="stop"), sse("[DONE]")])
    gateway = await _gateway(start_gateway, upstream, ["s:m", "sr:r", "sp:ok"])
    for n in (1, 2):
        response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
        events = _events(await response.read())
        assert _chat_text(events) == "Hello world" and events[-1] == ("message", "[DONE]")
        assert gateway.request_logs()[-1]["outcome"] == "ok"
        assert len([a for a in upstream.asked("ok") if a.continuation]) == n
    # Asked once: the second stream went straight to the next continuation target.
    assert len([a for a in upstream.asked("r") if a.continuation]) == 1
    first, second = (line["attempts"] for line in gateway.request_logs()[-2:])
    assert [(a["upstream"], a["outcome"]) for a in first] == [("s", "cut"), ("sr", "rejected"), ("sp", "ok")]
    assert [(a["upstream"], a["outcome"]) for a in second] == [("s", "cut"), ("sp", "ok")]
    assert await _recoveries(gateway, "ok") == 2


async def test_the_final_error_names_the_first_cause_never_the_refusal(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hello ", role=True)], end="abort")
    upstream.scripts["r"] = upstream.scripts["r2"] = Script([chat_chunk("unused")])
    upstream.scripts["r#cont"] = upstream.scripts["r2#cont"] = REFUSE
    gateway = await _gateway(start_gateway, upstream, ["s:m", "sr:r", "sr2:r2"])
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
    events = _events(await response.read())
    error = orjson.loads(events[-1][1])["error"]["message"]
    assert "mid-stream" in error and "prefill" not in error
    line = gateway.request_logs()[-1]
    assert "prefill" not in line["error"] and "400" not in line["error"]
    assert [(a["upstream"], a["outcome"]) for a in line["attempts"]][1:] == [
        ("sr", "rejected"), ("sr2", "rejected")]
    assert await _recoveries(gateway, "failed") == 1


async def test_a_messages_stream_is_continued_on_the_cut_target(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script([anthropic_start(), anthropic_text("Hello ")], end="abort")
    upstream.scripts["m#cont"] = Script([anthropic_start(), anthropic_text("world"), anthropic_finish(),
                                         ANTHROPIC_END])
    gateway = await _gateway(start_gateway, upstream, ["sa:m"])
    body = {"model": "chat", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = await gateway.client.post("/v1/messages", json=body, headers=auth())
    events = _events(await response.read())
    text = "".join(orjson.loads(d)["delta"].get("text", "") for e, d in events if e == "content_block_delta")
    assert text == "Hello world"
    assert [e for e, _ in events].count("message_start") == 1 and events[-1][0] == "message_stop"


async def test_a_simple_events_stream_is_resumed(start_gateway: GatewayFactory, upstream: Scripted) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hello ", role=True)], end="abort")
    upstream.scripts["m#cont"] = Script([chat_chunk("world"), chat_chunk(finish="stop"), sse("[DONE]")])
    gateway = await _gateway(start_gateway, upstream, ["sp:m"])
    response = await gateway.client.post("/api/chat/stream", json=chat_body("chat"), headers=auth())
    events = _events(await response.read())
    assert "".join(orjson.loads(d)["content"] for e, d in events if e == "message") == "Hello world"
    assert events[-1][0] == "done"


def _responses_cut() -> list[bytes]:
    item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    return [responses_event("response.created", 0, response={"id": "resp_1", "object": "response",
                                                              "created_at": 1, "model": "m", "status": "in_progress",
                                                              "output": []}),
            responses_event("response.output_item.added", 1, output_index=0, item=item),
            responses_event("response.content_part.added", 2, item_id="msg_1", output_index=0, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": []}),
            responses_event("response.output_text.delta", 3, item_id="msg_1", output_index=0, content_index=0,
                            delta="Hello ")]


def _responses_continuation() -> list[bytes]:
    return [responses_event("response.created", 0, response={"id": "resp_2", "model": "m"}),
            responses_event("response.output_text.delta", 1, item_id="msg_9", output_index=0, content_index=0,
                            delta="world"),
            responses_event("response.completed", 2, response={
                "id": "resp_2", "status": "completed", "usage": {"input_tokens": 4, "output_tokens": 1,
                                                                 "total_tokens": 5}})]


async def test_a_responses_stream_is_resumed_with_consecutive_sequence_numbers(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script(_responses_cut(), end="abort")
    upstream.scripts["m#cont"] = Script(_responses_continuation())
    gateway = await _gateway(start_gateway, upstream, ["sp:m"])
    response = await gateway.client.post("/v1/responses", json={"model": "chat", "input": "hi", "stream": True},
                                         headers=auth())
    events = [(e, orjson.loads(d)) for e, d in _events(await response.read())]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    kinds = [e for e, _ in events]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.completed"
    text = "".join(d["delta"] for e, d in events if e == "response.output_text.delta")
    final = events[-1][1]["response"]
    assert text == "Hello world" and final["id"] == "resp_1"
    assert final["output"][0]["content"][0]["text"] == "Hello world"
    (cont,) = [a for a in upstream.asked("m") if a.continuation]
    assert cont.body["input"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello "}]
    assert gateway.request_logs()[-1]["outcome"] == "ok"


async def test_the_openai_sdk_reads_a_resumed_responses_stream(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script(_responses_cut(), end="abort")
    upstream.scripts["m#cont"] = Script(_responses_continuation())
    gateway = await _gateway(start_gateway, upstream, ["sp:m"])
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY, max_retries=0) as client:
        async with client.responses.stream(model="chat", input="hi") as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_response()
    assert final.output_text == "Hello world"


async def test_a_responses_stream_that_cannot_be_continued_numbers_its_error_after_the_last_event(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script(_responses_cut(), end="abort")
    upstream.scripts["m#cont"] = REFUSE
    gateway = await _gateway(start_gateway, upstream, ["sp:m"])
    response = await gateway.client.post("/v1/responses", json={"model": "chat", "input": "hi", "stream": True},
                                         headers=auth())
    events = [(e, orjson.loads(d)) for e, d in _events(await response.read())]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert events[-1][0] == "error" and "prefill" not in events[-1][1]["message"]


async def test_a_completions_stream_is_resumed_with_the_text_after_the_prompt(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    head = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m"}
    upstream.scripts["m"] = Script([sse({**head, "choices": [{"index": 0, "text": "Hello ",
                                                               "finish_reason": None}]})], end="abort")
    upstream.scripts["m#cont"] = Script([sse({**head, "id": "cmpl-2", "choices": [
        {"index": 0, "text": "world", "finish_reason": "stop"}]}), sse("[DONE]")])
    gateway = await _gateway(start_gateway, upstream, ["sp:m"])
    response = await gateway.client.post("/v1/completions", headers=auth(),
                                         json={"model": "chat", "prompt": "Say:", "stream": True})
    events = _events(await response.read())
    chunks = [orjson.loads(d) for _, d in events if d != "[DONE]"]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello world"
    assert {c["id"] for c in chunks} == {"cmpl-1"} and events[-1] == ("message", "[DONE]")
    (cont,) = [a for a in upstream.asked("m") if a.continuation]
    assert cont.body["prompt"] == "Say:Hello "
    assert gateway.request_logs()[-1]["outcome"] == "ok"


async def test_a_responses_stream_translated_from_an_anthropic_target_is_resumed(
    start_gateway: GatewayFactory, upstream: Scripted,
) -> None:
    upstream.scripts["m"] = Script([anthropic_start(), anthropic_text("Hello ")], end="abort")
    upstream.scripts["m#cont"] = Script([anthropic_start(), anthropic_text("world"), anthropic_finish(),
                                         ANTHROPIC_END])
    gateway = await _gateway(start_gateway, upstream, ["sa:m"])
    response = await gateway.client.post("/v1/responses", json={"model": "chat", "input": "hi", "stream": True},
                                         headers=auth())
    events = [(e, orjson.loads(d)) for e, d in _events(await response.read())]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert [e for e, _ in events].count("response.created") == 1 and events[-1][0] == "response.completed"
    assert "".join(d["delta"] for e, d in events if e == "response.output_text.delta") == "Hello world"
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "Hello world"
    (cont,) = [a for a in upstream.asked("m") if a.continuation]
    assert cont.body["messages"][-1] == {"role": "assistant", "content": "Hello "}
    assert gateway.request_logs()[-1]["outcome"] == "ok"


async def test_a_cut_during_a_tool_call_is_not_resumed(start_gateway: GatewayFactory, upstream: Scripted) -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a'}}
    head = {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "s"}
    upstream.scripts["m"] = Script([sse({**head, "choices": [{"index": 0, "delta": {
        "role": "assistant", "tool_calls": [call]}, "finish_reason": None}]})], end="abort")
    upstream.scripts["m#cont"] = Script([chat_chunk("never"), chat_chunk(finish="stop"), sse("[DONE]")])
    gateway = await _gateway(start_gateway, upstream, ["sp:m"])
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
    events = _events(await response.read())
    assert "mid-stream" in orjson.loads(events[-1][1])["error"]["message"]
    assert [a for a in upstream.asked("m") if a.continuation] == []
    assert gateway.request_logs()[-1]["outcome"] == "upstream_error"
