"""Config messages: every problem reads as one clear line naming the file (or the variable),
the key and what is wrong, never pydantic's raw wording; misspelt variables are warned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import config_from_dict
from gateway.errors import ConfigError
from tests.conftest import UPSTREAM_ENV, raw_config, write_toml

MOCK_URL = "http://127.0.0.1:9"
TENANT = {"name": "t", "key_sha256": "a" * 64}


def problem(env: dict[str, str] | None = None, **sections: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw_config(MOCK_URL, **sections), {**UPSTREAM_ENV, **(env or {})}, source="gw.toml")
    return str(caught.value)


def warnings(env: dict[str, str]) -> list[str]:
    heard: list[str] = []
    config_from_dict(raw_config(MOCK_URL), {**UPSTREAM_ENV, **env}, source="gw.toml", warn=heard.append)
    return heard


def test_a_non_numeric_port_from_the_environment_names_the_variable_and_the_value() -> None:
    assert problem({"GATEWAY_SERVER_PORT": "abc"}) == (
        "gw.toml: GATEWAY_SERVER_PORT (environment) -> server.port: must be an integer (got 'abc')")


@pytest.mark.parametrize(("variable", "suggestion"), [
    ("GATEWAY_SERVR_PORT", "GATEWAY_SERVER_PORT"),
    ("GATEWAY_LIMIT_MAX_QUEUE", "GATEWAY_LIMITS_MAX_QUEUE"),
    ("GATEWAY_RATELIMT_BACKEND", "GATEWAY_RATELIMIT_BACKEND"),
    ("GATEWAY_UPSTREAM_0_MAX_RETRIES", "GATEWAY_UPSTREAMS_0_MAX_RETRIES"),
])
def test_a_misspelt_section_in_a_variable_is_warned_with_the_likely_name(variable: str, suggestion: str) -> None:
    assert warnings({variable: "9"}) == [
        f"{variable}: not a config override (no such section or table): ignored (did you mean {suggestion}?)"]


def test_a_variable_like_no_section_is_warned_without_a_guess() -> None:
    assert warnings({"GATEWAY_ZZZ_PORT": "9"}) == [
        "GATEWAY_ZZZ_PORT: not a config override (no such section or table): ignored"]


def test_a_misspelt_key_is_unknown_with_the_likely_key() -> None:
    assert problem({"GATEWAY_SERVER_PROT": "9000"}) == (
        "gw.toml: GATEWAY_SERVER_PROT (environment) -> server.prot: unknown key (did you mean `port`?)")
    assert problem(upstreams=[{"name": "a", "dialect": "openai", "base_url": "http://a", "max_retry": 1}]) == (
        "gw.toml: upstreams[0].max_retry: unknown key (did you mean `max_retries`?)")
    assert problem(server={"zzzz": 1}) == "gw.toml: server.zzzz: unknown key"


@pytest.mark.parametrize(("sections", "line"), [
    ({"ratelimit": {"redis_url": "http://x"}},
     "gw.toml: ratelimit.redis_url: must start with redis://, rediss:// or unix:// (got 'http://x')"),
    ({"upstreams": [{"name": "a:b", "dialect": "openai", "base_url": "http://a"}]},
     "gw.toml: upstreams[0].name: must have no ':' and no spaces (got 'a:b')"),
    ({"upstreams": [{"name": "a", "dialect": "openai", "base_url": "ftp://a"}]},
     "gw.toml: upstreams[0].base_url: must start with http:// or https:// (got 'ftp://a')"),
    ({"server": {"admin_key_sha256": "zz"}},
     "gw.toml: server.admin_key_sha256: must be empty or 64 hex characters (the output of `llm-gateway hash-key`) (got 'zz')"),
    ({"tenants": [{"name": "t", "key_sha256": "abc"}]},
     "gw.toml: tenants[0].key_sha256: must be 64 hex characters (the output of `llm-gateway hash-key`) (got 'abc')"),
])
def test_patterns_read_as_what_they_ask(sections: dict[str, Any], line: str) -> None:
    assert problem(**sections) == line


@pytest.mark.parametrize(("sections", "line"), [
    ({"server": {"cors_origins": "https://a"}}, "gw.toml: server.cors_origins: must be a list (got 'https://a')"),
    ({"routes": [{"model": "x", "targets": "mock"}]}, "gw.toml: routes[0].targets: must be a list (got 'mock')"),
    ({"tenants": [{**TENANT, "extra_key_sha256": "x"}]}, "gw.toml: tenants[0].extra_key_sha256: must be a list (got 'x')"),
    ({"server": {"port": 1.5}}, "gw.toml: server.port: must be an integer (got 1.5)"),
    ({"server": {"ui": "yes"}}, "gw.toml: server.ui: must be true or false (got 'yes')"),
    ({"ratelimit": {"backend": "mem"}}, "gw.toml: ratelimit.backend: must be 'memory' or 'redis' (got 'mem')"),
])
def test_types_read_in_our_words(sections: dict[str, Any], line: str) -> None:
    assert problem(**sections) == line


def test_check_config_prints_the_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path / "gw.toml", raw_config(MOCK_URL, ratelimit={"redis_url": "http://x"}))
    for name, value in UPSTREAM_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: ratelimit.redis_url: must start with redis://, rediss:// or unix:// (got 'http://x')"]
