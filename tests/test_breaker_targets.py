"""Circuit breakers per target (upstream, model), through HTTP against the mock: one model's
outage does not stop the upstream's other models, only the provider's failures count (never
an answer about the request), `gateway_upstream_up` is 0 only while every target of the
upstream is open (or its credentials are refused), each target has its breaker gauge, and
the health the operator's page reads says the same. Pure parts of the registry at the end."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.breaker import Breakers, BreakerState
from gateway.health import upstream_health
from gateway.metrics import configured_targets
from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body, make_config

FAST = {"first_byte_timeout_seconds": 0.5, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05,
        "max_retries": 0, "failures_to_trip": 1, "cooldown_seconds": 600}


def _upstreams(mock: Mock, a: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    common = {"dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY"}
    return [{"name": "a", **common, **FAST, **(a or {})}, {"name": "b", **common, **FAST}]


async def _start(start_gateway: GatewayFactory, mock: Mock, routes: list[dict[str, Any]],
                 a: dict[str, Any] | None = None) -> Gateway:
    return await start_gateway(upstreams=_upstreams(mock, a), routes=routes)


async def _post(gateway: Gateway, model: str, *, stream: bool = False) -> tuple[int, bytes]:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(model, stream=stream), headers=auth())
    return response.status, await response.read()


def _asked(mock: Mock, model: str) -> int:
    return sum(1 for r in mock.state.requests if r.body is not None and r.body.get("model") == model)


async def test_one_models_outage_does_not_stop_the_upstreams_other_models(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, [
        {"model": "sick", "targets": ["a:m1+status=503", "b:m3"]},
        {"model": "well", "targets": ["a:m2", "b:m3"]},
        {"model": "refusing", "targets": ["a:m2+content_filter", "b:m3"]},
    ])
    for _ in range(3):
        assert (await _post(gateway, "sick"))[0] == 200
    assert _asked(mock, "m1+status=503") == 1  # tripped at once, then skipped
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model="m1+status=503") == 1
    # The other model on the same upstream is still asked, and answers.
    assert (await _post(gateway, "well"))[0] == 200
    assert gateway.request_logs()[-1]["upstream"] == "a"
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model="m2") == 0
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 1
    # A content-policy refusal from the primary: one attempt, the provider's reason propagated,
    # never sent to a fallback, and never counted (asked again every time).
    for n in (1, 2, 3):
        status, body = await _post(gateway, "refusing")
        assert status == 400 and b"content" in body.lower()
        assert _asked(mock, "m2+content_filter") == n
    assert [a["upstream"] for a in gateway.request_logs()[-1]["attempts"]] == ["a"]
    assert await gateway.metric("gateway_target_breaker_open", upstream="a",
                                model="m2+content_filter") == 0


@pytest.mark.parametrize("fault", ["status=400", "status=404", "status=413", "status=422",
                                   "context_overflow", "content_filter"])
async def test_an_answer_about_the_request_never_opens_a_breaker(
    start_gateway: GatewayFactory, mock: Mock, fault: str,
) -> None:
    model = f"m1+{fault}"
    gateway = await _start(start_gateway, mock, [{"model": "chat", "targets": [f"a:{model}", "b:m3"]}])
    for n in (1, 2, 3):
        status, _ = await _post(gateway, "chat")
        assert 400 <= status < 500
        assert _asked(mock, model) == n  # the primary is asked every time
        assert _asked(mock, "m3") == 0  # and its answer is the client's: no fallback
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model=model) == 0
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 1


@pytest.mark.parametrize("fault", ["status=429", "status=500", "status=503", "hang"])
async def test_the_providers_failures_open_the_targets_breaker(
    start_gateway: GatewayFactory, mock: Mock, fault: str,
) -> None:
    model = f"m1+{fault}"
    gateway = await _start(start_gateway, mock, [{"model": "chat", "targets": [f"a:{model}", "b:m3"]}])
    assert (await _post(gateway, "chat"))[0] == 200  # b answered
    assert (await _post(gateway, "chat"))[0] == 200
    assert _asked(mock, model) == 1  # skipped the second time
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model=model) == 1
    # Its only target is open: the upstream is down.
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 0
    (a_health, _) = upstream_health(gateway.client.app)
    assert a_health.name == "a" and not a_health.up and not a_health.credentials_refused
    (target,) = a_health.targets
    assert (target.model, target.state) == (model, BreakerState.OPEN)
    assert target.last_error and target.retry_in_seconds > 0


@pytest.mark.parametrize(("fault", "resume"), [("drop=2", False), ("stall=2@2", False),
                                               ("drop=2", True), ("garbage=2", True)])
async def test_a_cut_stalled_or_malformed_stream_counts_against_its_target(
    start_gateway: GatewayFactory, mock: Mock, fault: str, resume: bool,
) -> None:
    """(A malformed event is seen where the gateway reads the events: on a resume route.)"""
    model = f"m1+{fault}"
    route = {"model": "chat", "targets": [f"a:{model}", "b:m3"], "resume_midstream": resume}
    gateway = await start_gateway(upstreams=[{**u, "idle_timeout_seconds": 0.5, "supports_prefill": True}
                                             for u in _upstreams(mock)], routes=[route])
    status, body = await _post(gateway, "chat", stream=True)
    assert status == 200
    if resume:  # continued on b
        assert body.rstrip().endswith(b"data: [DONE]") and b"}{garbage" not in body
    else:  # the stream failed after its first byte
        assert b'"error"' in body
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model=model) == 1
    status, body = await _post(gateway, "chat", stream=True)
    assert status == 200 and body.rstrip().endswith(b"data: [DONE]")
    assert _asked(mock, model) == 1  # skipped the second time


async def test_a_complete_stream_keeps_the_breaker_closed_and_a_client_leaving_is_no_verdict(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, [{"model": "chat", "targets": ["a:m1", "b:m3"]}])
    for _ in range(3):
        status, body = await _post(gateway, "chat", stream=True)
        assert status == 200 and body.rstrip().endswith(b"data: [DONE]")
    async with gateway.client.post("/v1/chat/completions", headers=auth(),
                                   json=chat_body("chat", stream=True)) as response:
        await response.content.readline()  # the client leaves after the first line
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model="m1") == 0
    assert (await _post(gateway, "chat"))[0] == 200
    assert gateway.request_logs()[-1]["upstream"] == "a"


async def test_upstream_up_is_0_while_every_target_is_open_or_its_key_is_refused(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, [
        {"model": "one", "targets": ["a:m1+status=500", "b:m3"]},
        {"model": "two", "targets": ["a:m2+status=500", "b:m3"]},
        {"model": "locked", "targets": ["a:m4+status=401", "b:m3"]},
    ])
    assert (await _post(gateway, "one"))[0] == 200
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 1  # m2 and m4 are closed
    assert (await _post(gateway, "two"))[0] == 200
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 1  # m4 still closed
    assert (await _post(gateway, "locked"))[0] == 200
    # The key refused: down, although m4's breaker did not count it.
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 0
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model="m4+status=401") == 0
    health = {h.name: h for h in upstream_health(gateway.client.app)}
    assert health["a"].credentials_refused and not health["a"].up and health["b"].up


async def test_every_configured_target_has_its_breaker_gauge_from_the_start(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, [{"model": "chat", "targets": ["a:m1", "b"]},
                                                 {"model": "gpt-*", "targets": ["a"]}])
    text = await gateway.metrics()
    assert 'gateway_target_breaker_open{model="m1",upstream="a"} 0.0' in text
    assert 'gateway_target_breaker_open{model="chat",upstream="b"} 0.0' in text
    # A glob route's target keeps the client's model name: labelled with the glob.
    assert (await _post(gateway, "gpt-4o+status=500"))[0] >= 500
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model="gpt-*") == 1


async def test_breakers_start_closed_in_every_test_whatever_ran_before(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    """The same config as the tests that trip a's breakers: nothing of theirs is left here
    (breakers live on the app, one per gateway)."""
    gateway = await _start(start_gateway, mock, [{"model": "chat", "targets": ["a:m1+status=503", "b:m3"]}])
    assert await gateway.metric("gateway_target_breaker_open", upstream="a", model="m1+status=503") == 0
    assert await gateway.metric("gateway_upstream_up", upstream="a") == 1
    assert (await _post(gateway, "chat"))[0] == 200
    assert _asked(mock, "m1+status=503") == 1


# --- pure parts ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breakers_are_per_target_and_the_upstream_is_down_only_when_all_are() -> None:
    clock = Clock()
    reg = Breakers(clock)
    m1, m2 = reg.get("a", "m1", 1, 30), reg.get("a", "m2", 1, 30)
    permit = m1.allow()
    assert permit is not None
    m1.record_failure(permit, "HTTP 503")
    assert reg.is_open("a", "m1") and not reg.is_open("a", "m2") and not reg.is_open("a", "m9")
    assert reg.up() == {"a": True}
    permit = m2.allow()
    assert permit is not None
    m2.record_failure(permit, "connect")
    assert reg.up() == {"a": False} and not reg.upstream_up("a") and reg.upstream_up("b")
    clock.now += 5
    health = {h.model: h for h in reg.health()}
    assert health["m1"].last_error == "HTTP 503" and health["m1"].last_error_age_seconds == 5
    assert health["m1"].retry_in_seconds == 25
    reg.retain({"a": (1, 30)})
    assert len(reg.health()) == 2
    reg.retain({"a": (2, 30)})  # the upstream's breaker settings changed: its targets start over
    assert reg.health() == [] and reg.up() == {}


def test_a_streams_verdict_comes_at_its_end_and_its_first_byte_closes_a_probe() -> None:
    clock = Clock()
    reg = Breakers(clock)
    b = reg.get("a", "m", 2, 10)
    for _ in range(2):
        p = b.allow()
        assert p is not None
        b.record_failure(p, "cut")
    assert b.state is BreakerState.OPEN
    clock.now += 10
    probe = b.allow()
    assert probe is not None and probe.probe
    assert b.answered(probe) is not None and b.state is BreakerState.CLOSED  # first byte
    assert b.record_failure(probe, "cut mid-stream") is None  # then cut: one failure counted
    assert (b.state, b.consecutive_failures) == (BreakerState.CLOSED, 1)
    p = b.allow()
    assert p is not None and b.answered(p) is None  # not a probe: no change at the first byte
    b.record_success(p)  # the complete answer resets the count
    assert b.consecutive_failures == 0


def test_the_registry_is_bounded_and_forgets_healthy_breakers_first() -> None:
    reg = Breakers(Clock(), max_breakers=3)
    sick = reg.get("a", "sick", 1, 30)
    p = sick.allow()
    assert p is not None
    sick.record_failure(p)
    for n in range(10):  # a client inventing model names under a glob route
        reg.get("a", f"gpt-{n}", 1, 30)
    assert len(reg.health()) == 3 and reg.find("a", "sick") is sick


def test_configured_targets_are_the_concrete_ones() -> None:
    config = make_config("http://127.0.0.1:1", routes=[
        {"model": "chat", "targets": ["mock:m1", "mock-anthropic"]},
        {"model": "gpt-*", "targets": ["mock"]}])
    assert set(configured_targets(config)) == {
        ("mock", "m1"), ("mock-anthropic", "chat"), ("mock", "mock-1"), ("mock-anthropic", "claude-3-haiku")}
