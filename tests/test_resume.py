"""Mid-stream resume through HTTP: a stream cut, stalled or malformed after its first byte
continues on a target that supports prefill, spliced into the same client stream."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
from prometheus_client.parser import text_string_to_metric_families

from gateway.mock.answers import answer_words, word_pieces
from gateway.relay.guard import first_malformed
from gateway.sse import EventParser
from gateway.state import UPSTREAMS
from tests.conftest import CLIENT_KEY, Gateway, GatewayFactory, Mock, auth, chat_body

PROMPT = "hello there"
FULL = "".join(word_pieces(answer_words(PROMPT, 12)))  # the mock's 12-word answer
FAST = {"first_byte_timeout_seconds": 1.0, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.2,
        "max_retries": 0, "failures_to_trip": 0}


def _upstream(mock: Mock, name: str, dialect: str, **extra: Any) -> dict[str, Any]:
    if dialect == "openai":
        common = {"base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY"}
    else:
        common = {"base_url": mock.url, "api_key_env": "MOCK_ANTHROPIC_KEY"}
    return {"name": name, "dialect": dialect, **common, **FAST, **extra}


async def _start(start_gateway: GatewayFactory, mock: Mock, primary: str, *, first: str = "openai",
                 second: str = "openai", prefill: bool = True, resume: bool = True,
                 idle: float = 60.0, second_model: str = "m2") -> Gateway:
    upstreams = [_upstream(mock, "a", first, idle_timeout_seconds=idle),
                 _upstream(mock, "b", second, supports_prefill=prefill)]
    routes = [{"model": "chat", "targets": [f"a:{primary}", f"b:{second_model}"],
               "resume_midstream": resume}]
    return await start_gateway(upstreams=upstreams, routes=routes)


async def _openai_text(gateway: Gateway) -> tuple[str, list[Any]]:
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


async def _anthropic_text(gateway: Gateway) -> tuple[str, list[Any]]:
    async with anthropic.AsyncAnthropic(base_url=gateway.url(""), api_key=CLIENT_KEY, max_retries=0) as client:
        async with client.messages.stream(model="chat", max_tokens=100,
                                          messages=[{"role": "user", "content": PROMPT}]) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_message()
    text = "".join(block.text for block in final.content if block.type == "text")
    return text, events


async def _recoveries(gateway: Gateway) -> dict[str, float]:
    text = await (await gateway.client.get("/metrics")).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    family = families.get("gateway_midstream_recoveries")
    if family is None:
        return {}
    return {s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")}


async def _raw_events(gateway: Gateway, model: str = "chat") -> tuple[int, list[tuple[str, str]]]:
    response = await gateway.client.post("/v1/chat/completions", json=chat_body(model, content=PROMPT),
                                         headers=auth())
    body = await response.read()
    return response.status, [(e.event, e.data) for e in EventParser().feed(body)]


async def test_cut_openai_stream_is_resumed_with_the_full_text_once(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+drop=4")
    text, chunks = await _openai_text(gateway)
    assert text == FULL
    assert {c.id for c in chunks} == {chunks[0].id}
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert await _recoveries(gateway) == {"ok": 1.0}
    prefill = mock.state.requests[-1].body
    assert prefill is not None and prefill["model"] == "m2"
    assert prefill["messages"][-1]["role"] == "assistant"
    assert FULL.startswith(prefill["messages"][-1]["content"])
    line = gateway.request_logs()[-1]
    tries = [(a["upstream"], a["outcome"]) for a in line["attempts"]]
    assert tries == [("a", "cut"), ("b", "ok")]  # a answered, then was cut; b finished it
    assert line["upstream"] == "b"


async def test_cut_anthropic_stream_is_resumed_for_the_anthropic_sdk(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+drop=4", first="anthropic", second="anthropic")
    text, events = await _anthropic_text(gateway)
    assert text == FULL
    assert [e.type for e in events].count("message_start") == 1
    assert [e.type for e in events].count("message_stop") == 1
    assert await _recoveries(gateway) == {"ok": 1.0}


async def test_translated_streams_are_resumed_across_dialects(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    to_anthropic = await _start(start_gateway, mock, "m1+drop=3", first="anthropic", second="openai")
    assert (await _openai_text(to_anthropic))[0] == FULL
    to_openai = await _start(start_gateway, mock, "m1+drop=5", first="openai", second="anthropic")
    text, events = await _anthropic_text(to_openai)
    assert text == FULL
    assert [e.type for e in events].count("message_stop") == 1


async def test_a_stall_past_the_idle_timeout_is_resumed(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await _start(start_gateway, mock, "m1+stall=5@3", idle=0.3)
    assert (await _openai_text(gateway))[0] == FULL
    assert await _recoveries(gateway) == {"ok": 1.0}


async def test_a_malformed_event_is_kept_from_the_client_and_resumed(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+garbage=3")
    status, events = await _raw_events(gateway)
    assert status == 200
    datas = [d for _, d in events]
    assert datas[-1] == "[DONE]"
    parsed = [orjson.loads(d) for d in datas[:-1]]  # every event the client got is JSON
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in parsed if p["choices"])
    assert text == FULL


async def test_without_resume_a_cut_is_one_error_event(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await _start(start_gateway, mock, "m1+drop=4", resume=False)
    status, events = await _raw_events(gateway)
    assert status == 200
    errors = [orjson.loads(d) for _, d in events if '"error"' in d]
    assert len(errors) == 1
    assert orjson.loads(events[-1][1]) == errors[0]  # the error is the stream's last event
    assert errors[0]["error"]["message"].startswith("upstream connection lost mid-stream")
    assert len(mock.state.requests) == 1


async def test_a_fallback_that_rejects_prefill_gives_one_error_naming_the_cut(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+drop=4", second_model="m2+no_prefill")
    status, events = await _raw_events(gateway)
    assert status == 200
    errors = [orjson.loads(d)["error"] for _, d in events if '"error"' in d]
    assert len(errors) == 1
    assert errors[0]["message"].startswith("upstream connection lost mid-stream")
    assert await _recoveries(gateway) == {"failed": 1.0}
    assert len(mock.state.requests) == 2


async def test_no_target_with_prefill_is_unavailable(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await _start(start_gateway, mock, "m1+drop=4", prefill=False)
    status, events = await _raw_events(gateway)
    assert status == 200
    assert len([d for _, d in events if '"error"' in d]) == 1
    assert await _recoveries(gateway) == {"unavailable": 1.0}
    assert len(mock.state.requests) == 1


def test_first_malformed_points_at_the_bad_events_start() -> None:
    good = b'data: {"a":1}\n\n'
    assert first_malformed(good + b"data: [DONE]\n\n") is None
    assert first_malformed(good + b"event: x\ndata: }{garbage\n\n") == len(good)
    assert first_malformed(b"data: }{\n\n") == 0
    assert first_malformed(good + b'data: {"cut') == len(good)


async def test_balance_counts_a_stream_in_flight_until_its_relay_ends(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    upstreams = [_upstream(mock, "a", "openai"), _upstream(mock, "b", "openai")]
    gateway = await start_gateway(upstreams=upstreams, routes=[
        {"model": "chat", "targets": ["a:m1+tps=40", "b:m1+tps=40"], "strategy": "balance"}])
    policy = gateway.client.app[UPSTREAMS]
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat"), headers=auth())
    assert response.status == 200
    await response.content.readline()  # the stream is being relayed
    assert policy.in_flight("a") + policy.in_flight("b") == 1
    await response.read()
    assert policy.in_flight("a") + policy.in_flight("b") == 0


async def test_the_client_gets_heartbeats_while_a_continuation_is_asked_for(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    # Cut after 4 events; the continuation's first byte comes 1.2 s later: with heartbeats every
    # 0.3 s, the client gets pings meanwhile, between whole events, and then the whole text.
    upstreams = [_upstream(mock, "a", "openai"),
                 _upstream(mock, "b", "openai", supports_prefill=True, first_byte_timeout_seconds=5)]
    gateway = await start_gateway(server={"heartbeat_seconds": 0.3}, upstreams=upstreams, routes=[
        {"model": "chat", "targets": ["a:m1+drop=4", "b:m2+delay=1.2"], "resume_midstream": True}])
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("chat", content=PROMPT),
                                         headers=auth())
    body = await response.read()
    assert response.status == 200
    head, _, tail = body.partition(b": ping\n\n")
    assert tail, body  # at least one ping
    assert head.endswith(b"\n\n") and b": ping" not in head  # after whole events
    events = [(e.event, e.data) for e in EventParser().feed(body)]
    text = "".join(orjson.loads(data)["choices"][0]["delta"].get("content") or ""
                   for _, data in events if data != "[DONE]" and orjson.loads(data).get("choices"))
    assert text == FULL and events[-1][1] == "[DONE]"
    assert await _recoveries(gateway) == {"ok": 1.0}
