"""Issue 22's checklist: the 16 fault scenarios of the public failover benchmark, run in one
sequence against one gateway (as the benchmark runs them), once with circuit breakers on and
once with them out of the way (`failures_to_trip = 0`). Every scenario has its own route,
whose primary target is a model of upstream `a`: with breakers per target, one scenario's
failures never make a later scenario's primary be skipped, so no pass comes from a skipped
primary (each scenario asserts its primary was asked)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from gateway.sse import EventParser
from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body

PRICES = {"p-*": {"input": 1.0, "output": 2.0}, "fb-*": {"input": 10.0, "output": 20.0}}


@dataclass
class Scenario:
    name: str
    primary: str  # a's model, with the mock's fault directive
    stream: bool = True
    targets: tuple[str, ...] = ("b:fb-1",)  # after the primary
    resume: bool = False
    requests: int = 1


SCENARIOS = [
    Scenario("429_retry_after", "p-1+fail=1,fail_status=429,retry_after=0.1"),
    Scenario("429_no_retry_after", "p-2+status=429"),
    Scenario("500_once", "p-3+fail=1"),
    Scenario("503_persistent", "p-4+status=503"),
    Scenario("reset_before_headers", "p-5+drop=0", stream=False),
    Scenario("no_response", "p-6+hang"),
    Scenario("slow_first_token", "p-7+delay=0.3"),
    Scenario("cut_mid_answer", "p-8+drop=3", resume=True),
    Scenario("stall", "p-9+stall=2@3", resume=True),
    Scenario("malformed_chunk", "p-10+garbage=3", resume=True),
    Scenario("no_done", "p-11+noend"),
    Scenario("context_length_exceeded", "p-12+context_overflow"),
    Scenario("content_policy_refusal", "p-13+content_filter"),
    Scenario("fallback_rejects_prefill", "p-14+drop=3", targets=("b:fb-14+no_prefill", "c:fb-14c"),
             resume=True),
    Scenario("primary_flaps", "p-15+fail=1", requests=4),
    Scenario("failover_accounting", "p-16+status=503"),
]


def _config(mock: Mock, failures_to_trip: int) -> dict[str, Any]:
    common = {"dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY",
              "first_byte_timeout_seconds": 1.0, "idle_timeout_seconds": 1.0, "max_retries": 2,
              "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.5,
              "failures_to_trip": failures_to_trip, "cooldown_seconds": 60}
    routes = [{"model": s.name, "targets": [f"a:{s.primary}", *s.targets], "resume_midstream": s.resume,
               **({"on_context_overflow": "big"} if s.name == "context_length_exceeded" else {})}
              for s in SCENARIOS]
    routes.append({"model": "big", "targets": ["b:fb-big"]})
    return {"upstreams": [{"name": "a", **common}, {"name": "b", **common, "supports_prefill": True},
                          {"name": "c", **common, "supports_prefill": True}],
            "routes": routes, "prices": PRICES}


def _asked(mock: Mock, model: str) -> int:
    return sum(1 for r in mock.state.requests if r.body is not None and r.body.get("model") == model)


def _text(body: bytes) -> tuple[str, list[str]]:
    """An OpenAI stream's text and the data of its events."""
    data = [e.data for e in EventParser().feed(body)]
    text = ""
    for item in data:
        if item != "[DONE]":
            choices = orjson.loads(item).get("choices") or [{}]
            text += choices[0].get("delta", {}).get("content") or ""
    return text, data


async def _run(gateway: Gateway, mock: Mock, scenario: Scenario, breakers_on: bool) -> None:
    name = scenario.name
    for _ in range(scenario.requests):
        response = await gateway.client.post("/v1/chat/completions", headers=auth(),
                                             json=chat_body(name, stream=scenario.stream))
        body = await response.read()
        line = gateway.request_logs()[-1]
        tried = [(a["upstream"], a["model"], a["outcome"]) for a in line["attempts"]]
        assert tried and tried[0][:2] == ("a", scenario.primary), (name, tried)  # never skipped
        if name == "context_length_exceeded":
            assert response.status == 200 and line["upstream"] == "b"
            assert _asked(mock, "fb-big") == 1
            continue
        if name == "content_policy_refusal":  # one attempt, the provider's reason, no fallback
            assert response.status == 400 and b"content" in body.lower()
            assert len(tried) == 1 and _asked(mock, scenario.primary) == 1
            continue
        assert response.status == 200, (name, body[:300])
        if scenario.stream:
            text, data = _text(body)
            assert data[-1] == "[DONE]" and not any('"error"' in d for d in data), (name, data[-3:])
            assert line["outcome"] == "ok", (name, line)
        if name in ("429_retry_after", "500_once", "slow_first_token", "no_done"):
            assert line["upstream"] == "a", (name, tried)  # answered by the primary itself
        elif name in ("429_no_retry_after", "503_persistent", "reset_before_headers", "no_response",
                      "failover_accounting"):
            assert line["upstream"] == "b", (name, tried)
        elif name in ("cut_mid_answer", "stall", "malformed_chunk"):
            assert [t[2] for t in tried] == ["cut", "ok"] and "}{garbage" not in text
            assert await gateway.metric("gateway_midstream_recoveries_total", route="chat_completions",
                                        result="ok") >= 1
        elif name == "fallback_rejects_prefill":
            assert [(t[0], t[2]) for t in tried] == [("a", "cut"), ("b", "rejected"), ("c", "ok")]
        elif name == "primary_flaps":
            # Each request's first attempt fails, its retry answers: the breaker (3 in a row)
            # never opens, and the primary answers every time.
            assert line["upstream"] == "a" and [t[2] for t in tried] == ["status", "ok"]
    if name == "no_done":
        assert await gateway.metric("gateway_upstream_errors_total", upstream="a", kind="no_end_marker") == 1
    if name == "failover_accounting":  # the log and the charge name the model that answered
        *failed, answered = line["attempts"]
        assert all(a["cost_usd"] == 0 for a in failed)
        assert answered["model"] == "fb-1" and answered["cost_usd"] > 0
        assert line["cost_usd"] == answered["cost_usd"]
    if breakers_on and name == "503_persistent":  # 3 failures in a row: its target opens
        assert await gateway.metric("gateway_target_breaker_open", upstream="a", model=scenario.primary) == 1


@pytest.mark.parametrize("breakers_on", [True, False], ids=["breakers_on", "breakers_out_of_the_way"])
async def test_the_sixteen_failover_scenarios_in_one_run(
    start_gateway: GatewayFactory, mock: Mock, breakers_on: bool,
) -> None:
    gateway = await start_gateway(**_config(mock, 3 if breakers_on else 0))
    for scenario in SCENARIOS:
        await _run(gateway, mock, scenario, breakers_on)
    # After all of them, the upstream still counts as up: only some of its targets are open.
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 1
