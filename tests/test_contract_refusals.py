"""Contract edges a black-box review found: what a refusal says on the APIs with no
translation, which flag a command-line error names, config values that would unbound a wait
or hide a typo, and the Responses API's own error event."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.conftest import (
    CLIENT_KEY,
    REPO,
    UPSTREAM_ENV,
    Gateway,
    GatewayFactory,
    Mock,
    auth,
    raw_config,
    write_toml,
)

# --- 1. a model routed only to the other dialect, on an API that does not translate ---------

# (/v1/responses reaches Anthropic-served models, translated: test_responses_claude.py)
ELSEWHERE = [
    ("/v1/embeddings", {"model": "claude-3-haiku", "input": "hi"}, "anthropic"),
    ("/v1/completions", {"model": "claude-3-haiku", "prompt": "hi"}, "anthropic"),
    ("/v1/messages/count_tokens", {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
     "openai"),
]


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    """(type, message) of an error body in either dialect's shape."""
    error = body["error"]
    return error["type"], error["message"]


@pytest.mark.parametrize(("path", "body", "served_by"), ELSEWHERE)
async def test_a_model_of_the_other_dialect_is_404_saying_the_api_is_not_translated(
    gateway: Gateway, path: str, body: dict[str, Any], served_by: str,
) -> None:
    model = body["model"]
    for _ in range(2):  # the second answer comes from what the router remembered
        response = await gateway.client.post(path, json=body, headers=auth())
        assert response.status == 404
        kind, message = error_of(await response.json())
        assert kind == ("not_found_error" if path.startswith("/v1/messages") else "invalid_request_error")
        assert message == (f"model {model!r} is served only by {served_by}-dialect upstreams; "
                           f"{path} is not translated")


async def test_a_model_routed_nowhere_is_still_not_routed_to_any_upstream(gateway: Gateway) -> None:
    for path in ("/v1/responses", "/v1/chat/completions"):
        body = {"model": "nothing-like-it", "input": "hi", "messages": [{"role": "user", "content": "hi"}]}
        response = await gateway.client.post(path, json=body, headers=auth())
        assert response.status == 404
        error = (await response.json())["error"]
        assert error["code"] == "model_not_found"
        assert error["message"] == "model 'nothing-like-it' is not routed to any upstream"


# --- 2. a command-line flag's bad value names the flag ---------------------------------------

def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=REPO,
        timeout=60, env={"PATH": "/usr/bin:/bin", **UPSTREAM_ENV, **(env or {})})


def serve_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one `config_error` line's message (the log is JSON lines)."""
    assert result.returncode == 2
    [line] = [orjson.loads(text) for text in (result.stdout + result.stderr).splitlines() if text.strip()]
    assert line["event"] == "config_error"
    message: str = line["error"]
    return message


@pytest.mark.parametrize(("flags", "expected"), [
    (["--workers", "2"], "--workers (command line) -> server.workers: more than 1 worker needs"),
    (["--port", "99999"], "--port (command line) -> server.port: must be less than or equal to 65535"),
])
def test_a_bad_flag_value_is_blamed_on_the_flag(tmp_path: Path, flags: list[str], expected: str) -> None:
    path = write_toml(tmp_path / "gw.toml", raw_config("http://127.0.0.1:9"))
    message = serve_error(run_cli(["serve", "--config", str(path), *flags]))
    assert message.startswith(f"{path}: {expected}")
    assert "GATEWAY_SERVER" not in message and "environment" not in message


def test_a_bad_variable_value_is_still_blamed_on_the_variable(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "gw.toml", raw_config("http://127.0.0.1:9"))
    message = serve_error(run_cli(["serve", "--config", str(path)], {"GATEWAY_SERVER_PORT": "99999"}))
    assert message.startswith(f"{path}: GATEWAY_SERVER_PORT (environment) -> server.port: ")


# --- 3. what the README says of GATEWAY_* variables that override nothing -------------------

def test_a_variable_with_an_unknown_key_is_fatal_and_an_unknown_section_is_a_warning(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "gw.toml", raw_config("http://127.0.0.1:9"))
    fatal = run_cli(["check-config", "--config", str(path)], {"GATEWAY_SERVER_PROT": "9000"})
    assert fatal.returncode == 2
    assert fatal.stderr.splitlines() == [
        f"{path}: GATEWAY_SERVER_PROT (environment) -> server.prot: unknown key (did you mean `port`?)"]
    warned = run_cli(["check-config", "--config", str(path)], {"GATEWAY_SERVR_PORT": "9000"})
    assert warned.returncode == 0
    assert warned.stderr.splitlines() == [
        "warning: GATEWAY_SERVR_PORT: not a config override (no such section or table): ignored "
        "(did you mean GATEWAY_SERVER_PORT?)"]


# --- 4. no unbounded waits: every seconds setting is finite ---------------------------------

@pytest.mark.parametrize("key", [
    "limits.queue_timeout_seconds", "server.heartbeat_seconds", "server.drain_seconds",
    "server.client_body_timeout_seconds", "upstreams[0].idle_timeout_seconds",
    "upstreams[0].first_byte_timeout_seconds", "upstreams[0].backoff_max_seconds",
])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_non_finite_number_of_seconds_is_refused(tmp_path: Path, key: str, value: str) -> None:
    raw = raw_config("http://127.0.0.1:9")
    table, _, name = key.partition(".")
    section = raw["upstreams"][0] if table == "upstreams[0]" else raw[table]
    section[name] = float(value)
    path = write_toml(tmp_path / "gw.toml", raw)
    assert f"{name} = {value}" in path.read_text()
    result = run_cli(["check-config", "--config", str(path)])
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{path}: {key}: must be a finite number (got {value})"]


def test_a_non_finite_number_from_a_variable_is_refused_too(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "gw.toml", raw_config("http://127.0.0.1:9"))
    result = run_cli(["check-config", "--config", str(path)], {"GATEWAY_LIMITS_QUEUE_TIMEOUT_SECONDS": "inf"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}: GATEWAY_LIMITS_QUEUE_TIMEOUT_SECONDS (environment) -> limits.queue_timeout_seconds: "
        "must be a finite number (got inf)"]


# --- 5. a misspelt table is reported as what it is ------------------------------------------

def test_a_misspelt_table_is_an_unknown_key_not_a_missing_one(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "gw.toml", raw_config("http://127.0.0.1:9"))
    path.write_text(path.read_text().replace("[[tenants]]", "[[tenant]]"))
    result = run_cli(["check-config", "--config", str(path)])
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{path}: tenant: unknown key (did you mean `tenants`?)"]


# --- 6. the Responses API's own error event --------------------------------------------------

def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each event; the name is "" when the event has no `event:` line."""
    events = []
    for block in raw.split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if not lines:
            continue
        name = next((ln[6:].strip().decode() for ln in lines if ln.startswith(b"event:")), "")
        data = b"".join(ln[5:].strip() for ln in lines if ln.startswith(b"data:"))
        events.append((name, orjson.loads(data)))
    return events


def responses_error(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The stream's last event, checked to be the Responses API's error event, numbered after
    every event before it."""
    name, data = events[-1]
    assert name == "error"
    assert set(data) == {"type", "code", "message", "param", "sequence_number", "error"}
    assert data["type"] == "error" and data["param"] is None and data["message"]
    before = [d["sequence_number"] for _, d in events[:-1]]
    assert data["sequence_number"] == (max(before) + 1 if before else 0)
    assert data["error"] == {"type": "server_error", "code": data["code"], "message": data["message"],
                             "param": None}
    return data


def slow_upstream(mock: Mock) -> dict[str, Any]:
    return {"upstreams": [{"name": "mock", "dialect": "openai", "base_url": f"{mock.url}/v1",
                           "api_key_env": "MOCK_OPENAI_KEY", "models": ["mock-*"],
                           "idle_timeout_seconds": 0.5, "first_byte_timeout_seconds": 1,
                           "max_retries": 0}],
            "server": {"heartbeat_seconds": 0.2}}


@pytest.mark.parametrize(("model", "code"), [
    ("mock-1+noend", "upstream_error"),  # no response.completed: truncated
    ("mock-1+drop=3", "upstream_error"),  # the upstream connection cut mid-stream
    ("mock-1+stall=5@3", "upstream_timeout"),  # silent past idle_timeout_seconds
])
async def test_a_responses_stream_that_fails_ends_with_the_responses_error_event(
    start_gateway: GatewayFactory, mock: Mock, model: str, code: str,
) -> None:
    gateway = await start_gateway(**slow_upstream(mock))
    response = await gateway.client.post(
        "/v1/responses", json={"model": model, "input": "hi", "stream": True}, headers=auth())
    assert response.status == 200
    events = sse_events(await asyncio.wait_for(response.read(), 20))
    assert [name for name, _ in events[:2]] == ["response.created", "response.in_progress"]
    error = responses_error(events)
    assert error["code"] == code and error["sequence_number"] > 3
    assert sum(1 for name, _ in events if name == "error") == 1


async def test_a_responses_stream_failing_before_its_first_event_is_numbered_zero(
    start_gateway: GatewayFactory, mock: Mock,
) -> None:
    gateway = await start_gateway(**slow_upstream(mock))
    response = await gateway.client.post(  # headers never come: the client has its 200 and pings
        "/v1/responses", json={"model": "mock-1+hang", "input": "hi", "stream": True}, headers=auth())
    assert response.status == 200
    raw = await asyncio.wait_for(response.read(), 20)
    assert raw.startswith(b": ping")
    events = sse_events(raw)
    assert len(events) == 1 and responses_error(events)["code"] == "upstream_timeout"


async def test_a_responses_error_before_the_stream_keeps_the_openai_json_body(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/responses", json={"model": "mock-1", "stream": True}, headers=auth())
    assert response.status == 400 and response.content_type == "application/json"
    assert set((await response.json())["error"]) == {"message", "type", "code"}


async def test_the_openai_sdk_raises_the_gateways_error_for_a_failed_responses_stream(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url("/v1"), api_key=CLIENT_KEY, max_retries=0) as client:
        stream = await client.responses.create(model="mock-1+noend", input="hi", stream=True)
        seen: list[str] = []
        with pytest.raises(openai.APIError, match="before the answer was complete") as created:
            async for event in stream:
                seen.append(event.type)
        assert "response.output_text.delta" in seen and "response.completed" not in seen
        assert created.value.code == "upstream_error" and created.value.type == "server_error"
        with pytest.raises(openai.APIError, match="upstream connection lost mid-stream") as streamed:
            async with client.responses.stream(model="mock-1+drop=2", input="hi") as events:
                async for _ in events:
                    pass
        assert streamed.value.code == "upstream_error"
