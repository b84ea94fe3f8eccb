"""The simple route's `done` event carries the answer's `cost_usd` when its model is priced:
the same number the request's log line charges (the answering target's model, the live prices)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs import SimpleCodec
from gateway.config import PriceSpec
from gateway.dialects import Usage
from gateway.spend import PriceTable
from gateway.sse import EventParser
from tests._proc import eventually
from tests.conftest import Gateway, GatewayFactory, auth, chat_body

#: 1 and 2 micro-dollars a token for the OpenAI mock, 3 and 15 for the Anthropic one
PRICES = {"mock-*": {"input": 1.0, "output": 2.0}, "claude-*": {"input": 3.0, "output": 15.0}}


async def simple_events(gateway: Gateway, body: dict[str, Any]) -> list[tuple[str, Any]]:
    response = await gateway.client.post("/api/chat/stream", json=body, headers=auth())
    assert response.status == 200
    raw = await response.read()
    return [(e.event, orjson.loads(e.data)) for e in EventParser().feed(raw)]


async def logged(gateway: Gateway) -> dict[str, Any]:
    lines: list[dict[str, Any]] = await eventually(gateway.request_logs, what="the request's log line")
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize(("model", "rates"), [("mock-1", (1, 2)), ("claude-x", (3, 15))])
async def test_done_has_the_cost_the_log_line_charges(start_gateway: GatewayFactory, model: str,
                                                      rates: tuple[int, int]) -> None:
    gateway = await start_gateway(prices=PRICES)
    events = await simple_events(gateway, chat_body(model, content="what does it cost"))
    name, done = events[-1]
    assert name == "done"
    line = await logged(gateway)
    assert line["cost_usd"] > 0
    assert done == {"cost_usd": line["cost_usd"]}
    # and it is the usage the upstream reported, at the model's price
    expected = (line["prompt_tokens"] * rates[0] + line["completion_tokens"] * rates[1]) / 1_000_000
    assert done["cost_usd"] == pytest.approx(expected, abs=1e-12)


async def test_unpriced_model_has_no_cost_on_done(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(prices={"claude-*": {"input": 3.0, "output": 15.0}})
    events = await simple_events(gateway, chat_body("mock-1", content="free"))
    assert events[-1] == ("done", {})
    line = await logged(gateway)
    assert line["cost_usd"] == 0.0  # the log line counts an unpriced model as zero


async def test_no_prices_configured_done_is_empty(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    events = await simple_events(gateway, chat_body("claude-x", content="free"))
    assert events[-1] == ("done", {})


async def test_cost_is_the_answering_targets_model(start_gateway: GatewayFactory) -> None:
    # The route renames the model: the price is the target model's, not the requested name's.
    gateway = await start_gateway(
        prices={"claude-3-haiku": {"input": 3.0, "output": 15.0}, "alias": {"input": 100.0, "output": 100.0}},
        routes=[{"model": "alias", "targets": ["mock-anthropic:claude-3-haiku"]}])
    events = await simple_events(gateway, chat_body("alias", content="renamed"))
    line = await logged(gateway)
    name, done = events[-1]
    assert name == "done" and done == {"cost_usd": line["cost_usd"]}
    expected = (line["prompt_tokens"] * 3 + line["completion_tokens"] * 15) / 1_000_000
    assert done["cost_usd"] == pytest.approx(expected, abs=1e-12)


def done_data(codec: SimpleCodec, events: list[tuple[str, str]]) -> Any:
    out = b"".join(codec.feed(event, data) for event, data in events)
    parsed = list(EventParser().feed(out))
    assert parsed[-1].event == "done"
    return orjson.loads(parsed[-1].data)


def openai_usage_chunk(prompt: int, completion: int, cached: int) -> str:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "prompt_tokens_details": {"cached_tokens": cached}}
    return orjson.dumps({"choices": [], "usage": usage}).decode()


CACHED = PriceTable.from_config({"m": PriceSpec(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)})


@given(prompt=st.integers(0, 10**6), completion=st.integers(0, 10**6), cached=st.integers(0, 10**6))
def test_openai_done_cost_equals_the_price_tables_cost_of_the_metered_usage(
        prompt: int, completion: int, cached: int) -> None:
    codec = SimpleCodec("openai", lambda *tokens: CACHED.cost("m", *tokens))
    data = done_data(codec, [("", openai_usage_chunk(prompt, completion, cached)), ("", "[DONE]")])
    metered = Usage(prompt, completion, True, min(cached, prompt))
    micros = CACHED.usage_cost_micros("m", metered)
    assert micros is not None
    assert data == {"cost_usd": micros / 1_000_000}


@given(fresh=st.integers(0, 10**6), read=st.integers(0, 10**6), write=st.integers(0, 10**6),
       output=st.integers(0, 10**6))
def test_anthropic_done_cost_equals_the_price_tables_cost_of_the_metered_usage(
        fresh: int, read: int, write: int, output: int) -> None:
    codec = SimpleCodec("anthropic", lambda *tokens: CACHED.cost("m", *tokens))
    start = {"type": "message_start", "message": {"usage": {
        "input_tokens": fresh, "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
        "output_tokens": 1}}}
    delta = {"type": "message_delta", "usage": {"output_tokens": output}}
    data = done_data(codec, [("message_start", orjson.dumps(start).decode()),
                             ("message_delta", orjson.dumps(delta).decode()),
                             ("message_stop", '{"type": "message_stop"}')])
    metered = Usage(fresh + read + write, output, True, read, write)
    micros = CACHED.usage_cost_micros("m", metered)
    assert micros is not None
    assert data == {"cost_usd": micros / 1_000_000}


def test_unpriced_or_unreported_usage_leaves_done_empty() -> None:
    unpriced = SimpleCodec("openai", lambda *tokens: CACHED.cost("other", *tokens))
    assert done_data(unpriced, [("", openai_usage_chunk(10, 5, 0)), ("", "[DONE]")]) == {}
    # no usage reported: the log line charges the meter's estimate, which done does not show
    unreported = SimpleCodec("openai", lambda *tokens: CACHED.cost("m", *tokens))
    assert done_data(unreported, [("", '{"choices": [{"delta": {"content": "hi"}}]}'), ("", "[DONE]")]) == {}
    # no cost function: the done event as before
    assert done_data(SimpleCodec("anthropic"), [("message_stop", '{"type": "message_stop"}')]) == {}
