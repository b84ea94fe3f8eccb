"""Failover through HTTP: retries on the same target, the next target with its own model name,
circuit breakers, the context-overflow route, refused credentials, masked 4xx bodies and the
non-stream size cap, against the mock's fault directives."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.breaker import Breakers
from gateway.config import config_from_dict
from gateway.routing import Target
from gateway.upstream.mask import mask_secrets
from gateway.upstream.order import order_targets
from tests._proc import eventually
from tests.conftest import UPSTREAM_ENV, Gateway, GatewayFactory, Mock, auth, chat_body, raw_config

# A first byte may take long on a loaded machine: only the test of the first-byte timeout
# itself sets a short one (0.3 s here made a slow answer a 504 in other tests).
FAST = {"first_byte_timeout_seconds": 10, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.5,
        "max_retries": 2, "failures_to_trip": 0, "cooldown_seconds": 0.5}


def _upstreams(mock: Mock, a: dict[str, Any] | None = None, b: dict[str, Any] | None = None) -> list[Any]:
    common = {"dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY"}
    return [{"name": "a", **common, **FAST, **(a or {})}, {"name": "b", **common, **FAST, **(b or {})}]


async def _start(start_gateway: GatewayFactory, mock: Mock, primary: str, *, a: dict[str, Any] | None = None,
                 b: dict[str, Any] | None = None, routes: list[Any] | None = None,
                 **sections: Any) -> Gateway:
    routes = routes or [{"model": "chat", "targets": [f"a:{primary}", "b:m2"]}]
    return await start_gateway(upstreams=_upstreams(mock, a, b), routes=routes, **sections)


def _models_seen(mock: Mock) -> list[str]:
    return [r.body["model"] for r in mock.state.requests if r.body is not None]


def _tries(gateway: Gateway) -> list[tuple[str, str]]:
    return [(a["upstream"], a["outcome"]) for a in gateway.request_logs()[-1]["attempts"]]


async def _post(gateway: Gateway, *, stream: bool = False, model: str = "chat") -> tuple[int, Any]:
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(model, stream=stream), headers=auth())
    body = await response.read()
    return response.status, body


async def test_429_with_retry_after_once_is_honoured_on_the_same_target(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    primary = "m1+fail=1,fail_status=429,retry_after=0.2"
    gateway = await _start(start_gateway, mock, primary)
    status, body = await _post(gateway)
    assert status == 200
    assert _models_seen(mock) == [primary, primary]
    assert _tries(gateway) == [("a", "ratelimited"), ("a", "ok")]


async def test_429_with_retry_after_as_an_http_date_is_honoured(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    primary = "m1+fail=1,fail_status=429,retry_after_date"
    gateway = await _start(start_gateway, mock, primary, a={"backoff_max_seconds": 3})
    status, _ = await _post(gateway)
    assert status == 200
    assert _models_seen(mock) == [primary, primary]


async def test_429_with_a_date_beyond_backoff_max_moves_to_the_next_target(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    primary = "m1+status=429,retry_after_date,retry_after=30"
    gateway = await _start(start_gateway, mock, primary)
    status, _ = await _post(gateway)
    assert status == 200
    assert _models_seen(mock) == [primary, "m2"]


async def test_persistent_429_without_retry_after_goes_to_the_next_target(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    primary = "m1+status=429"
    gateway = await _start(start_gateway, mock, primary, a={"max_retries": 1})
    status, body = await _post(gateway)
    assert status == 200
    assert _models_seen(mock) == [primary, primary, "m2"]
    assert _tries(gateway) == [("a", "ratelimited"), ("a", "ratelimited"), ("b", "ok")]


async def test_500_once_is_retried_on_the_same_target(start_gateway: GatewayFactory, mock: Mock) -> None:
    primary = "m1+fail=1"
    gateway = await _start(start_gateway, mock, primary)
    status, body = await _post(gateway, stream=True)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert _models_seen(mock) == [primary, primary]
    assert _tries(gateway) == [("a", "status"), ("a", "ok")]


async def test_persistent_503_goes_to_the_next_target(start_gateway: GatewayFactory, mock: Mock) -> None:
    primary = "m1+status=503"
    gateway = await _start(start_gateway, mock, primary)
    status, body = await _post(gateway, stream=True)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert _models_seen(mock) == [primary] * 3 + ["m2"]  # 1 + max_retries, then the fallback


async def test_no_response_moves_on_after_one_first_byte_timeout(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    primary = "m1+hang"
    gateway = await _start(start_gateway, mock, primary, a={"first_byte_timeout_seconds": 0.3})
    status, body = await _post(gateway, stream=True)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert _models_seen(mock) == [primary, "m2"]  # ONE timeout on the primary, not three
    assert _tries(gateway) == [("a", "timeout"), ("b", "ok")]


async def test_context_overflow_goes_to_the_overflow_route(start_gateway: GatewayFactory, mock: Mock) -> None:
    routes = [
        {"model": "chat", "targets": ["a:m1+context_overflow", "b:m2"], "on_context_overflow": "chat-long"},
        {"model": "chat-long", "targets": ["b:long-1"]},
    ]
    gateway = await _start(start_gateway, mock, "", routes=routes)
    status, body = await _post(gateway)
    assert status == 200
    assert orjson.loads(body)["model"] == "long-1"
    assert _models_seen(mock) == ["m1+context_overflow", "long-1"]
    assert _tries(gateway) == [("a", "overflow"), ("b", "ok")]


async def test_content_filter_400_is_passed_through_and_never_retried(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    primary = "m1+content_filter"
    gateway = await _start(start_gateway, mock, primary)
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("chat", stream=False), headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "content_filter"
    assert _models_seen(mock) == [primary]


async def test_fallback_answers_with_its_own_model_name_and_usage(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+status=503", a={"max_retries": 0})
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("chat", stream=False), headers=auth())
    answer = await response.json()
    assert response.status == 200
    assert answer["model"] == "m2"
    log = gateway.request_logs()[-1]
    assert log["upstream"] == "b"
    assert (log["prompt_tokens"], log["completion_tokens"]) == (
        answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])
    assert [(a["upstream"], a["model"], a["outcome"]) for a in log["attempts"]] == [
        ("a", "m1+status=503", "status"), ("b", "m2", "ok")]
    assert log["attempts"][0]["status"] == 503


async def test_upstream_401_becomes_a_502_naming_the_upstream(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    routes = [{"model": "solo", "targets": ["a:m1+status=401"]}]
    gateway = await _start(start_gateway, mock, "", routes=routes)
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("solo", stream=False), headers=auth())
    assert response.status == 502
    assert (await response.json())["error"]["message"] == "upstream a refused the gateway's credentials"
    assert _models_seen(mock) == ["m1+status=401"]  # not retried
    log = gateway.request_logs()[-1]
    assert log["upstream"] == "a" and log["attempts"][0]["status"] == 401


async def test_echoed_upstream_key_is_masked(start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await _start(start_gateway, mock, "m1+echo_key")
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("chat", stream=False), headers=auth())
    assert response.status == 400
    message = (await response.json())["error"]["message"]
    # UPSTREAM_KEY = "sk-upstream-SECRET-0123456789": prefix, 3 characters, the last 4.
    assert message == "Incorrect API key provided: Authorization: Bearer sk-ups...6789"
    assert _models_seen(mock) == ["m1+echo_key"]
    assert gateway.request_logs()[-1]["attempts"][0]["excerpt"].count("sk-ups...6789") == 1


async def test_big_non_stream_answer_is_a_502(start_gateway: GatewayFactory, mock: Mock) -> None:
    routes = [{"model": "chat", "targets": ["a:m1+big=200000"]},
              {"model": "zipped", "targets": ["a:m1+big=200000,gzip"]}]
    gateway = await _start(start_gateway, mock, "", routes=routes, server={"max_response_bytes": 50000})
    for model in ("chat", "zipped"):  # the decompressed size is what counts
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(model, stream=False), headers=auth())
        assert response.status == 502
        assert (await response.json())["error"]["message"] == "upstream a: upstream answer over max_response_bytes"
    assert len(mock.state.requests) == 2


async def _metric(gateway: Gateway, line_start: str) -> float:
    text = await (await gateway.client.get("/metrics")).text()
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


async def test_primary_down_then_healthy_breaker_skips_it_then_probes_back(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    primary = "m1+down_for=1.5"
    gateway = await _start(start_gateway, mock, primary,
                           a={"max_retries": 0, "failures_to_trip": 2, "cooldown_seconds": 0.5})
    served = []
    for _ in range(20):
        status, _ = await _post(gateway)
        assert status == 200
        served.append(gateway.request_logs()[-1]["upstream"])
    assert served == ["b"] * 20
    primary_attempts = _models_seen(mock).count(primary)
    assert 2 <= primary_attempts <= 6  # the breaker tripped after 2: far fewer than 20
    assert await _metric(gateway, 'gateway_upstream_up{upstream="a"}') == 0.0
    # Back on the primary once it is healthy and the cooldown is over (bounded wait).
    async def served_by_a() -> bool:
        assert (await _post(gateway))[0] == 200
        return bool(gateway.request_logs()[-1]["upstream"] == "a")

    await eventually(served_by_a, timeout=15, interval=0.1, what="a request served by a again")
    assert await _metric(gateway, 'gateway_upstream_up{upstream="a"}') == 1.0
    events = [(line["event"], line.get("upstream")) for line in gateway.log_lines()
              if str(line.get("event", "")).startswith("circuit_")]
    assert events[0] == ("circuit_opened", "a") and events[-1] == ("circuit_closed", "a")


async def test_retries_and_fallbacks_together_end_by_the_total_deadline(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await _start(start_gateway, mock, "m1+hang", a={"total_timeout_seconds": 0.6,
                                                             "first_byte_timeout_seconds": 5})
    status, _ = await _post(gateway, stream=True)
    assert status == 504
    assert _models_seen(mock) == ["m1+hang"]


# --- pure parts ------------------------------------------------------------------------


def test_mask_secrets_keeps_prefix_three_and_last_four() -> None:
    body = b'{"m": "key sk-ant-api03-abcdefghijklmnopqrstuvwxyz and Bearer tok_1234567890abcdefXYZW"}'
    assert mask_secrets(body) == b'{"m": "key sk-ant-api...wxyz and Bearer tok...XYZW"}'
    assert mask_secrets(b"own=local-secret-value-0001", ["local-secret-value-0001"]) == b"own=loc...0001"
    assert mask_secrets(b"short sk-abc") == b"short sk-***"


def test_balance_orders_least_in_flight_then_weight_and_open_circuits_last() -> None:
    raw = raw_config("http://127.0.0.1:1", upstreams=[
        {"name": n, "dialect": "openai", "base_url": "http://127.0.0.1:1/v1", "weight": w,
         "api_key_env": "MOCK_OPENAI_KEY", "models": ["m"]}
        for n, w in (("x", 1), ("y", 3), ("z", 1))])
    config = config_from_dict(raw, UPSTREAM_ENV, source="<test>")
    x, y, z = (Target(config.upstream(n), "m") for n in "xyz")
    draws = iter([0.5, 0.5, 0.5])
    ordered = order_targets([x, y, z], "balance", in_flight={"x": 1}, is_open=lambda t: t.upstream.name == "z",
                            draw=lambda: next(draws))
    assert [t.upstream.name for t in ordered] == ["y", "x", "z"]
    assert order_targets([x, y, z], "fallback", in_flight={}, is_open=lambda t: True,
                         draw=lambda: 0.0) == [x, y, z]
    assert Breakers(lambda: 0.0).up() == {}
