"""Contract edges a black-box review found: what a refusal says on the APIs with no
translation, which flag a command-line error names, config values that would unbound a wait
or hide a typo, and the Responses API's own error event."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import (
    REPO,
    UPSTREAM_ENV,
    Gateway,
    auth,
    raw_config,
    write_toml,
)

# --- 1. a model routed only to the other dialect, on an API that does not translate ---------

ELSEWHERE = [
    ("/v1/responses", {"model": "claude-3-haiku", "input": "hi"}, "anthropic"),
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
