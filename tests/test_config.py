"""Config: the TOML schema, env overrides, and one-line errors at start (exit status 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli import main
from gateway.config import config_from_dict, load_config
from gateway.errors import ConfigError
from tests.conftest import REPO, UPSTREAM_ENV, raw_config, write_toml

MOCK_URL = "http://127.0.0.1:9"


def config_file(tmp_path: Path, **sections: Any) -> Path:
    return write_toml(tmp_path / "gateway.toml", raw_config(MOCK_URL, **sections))


def test_a_full_config_loads_into_frozen_objects(tmp_path: Path) -> None:
    path = config_file(tmp_path, server={"cors_origins": ["https://app.example.com"]})
    config = load_config(path, UPSTREAM_ENV)
    assert config.server.cors_origins == ("https://app.example.com",)
    assert config.upstreams[0].api_key.get_secret_value() == UPSTREAM_ENV["MOCK_OPENAI_KEY"]
    assert "SECRET" not in repr(config)  # keys never print
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        config.server.port = 1  # type: ignore[misc]


def test_defaults_match_the_design(tmp_path: Path) -> None:
    raw = raw_config(MOCK_URL)
    raw["server"] = {}
    for upstream in raw["upstreams"]:
        for key in ("backoff_base_seconds", "backoff_max_seconds"):
            upstream.pop(key)
    config = load_config(write_toml(tmp_path / "c.toml", raw), UPSTREAM_ENV)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 8080)
    assert config.server.max_body_bytes == 1048576 and config.server.heartbeat_seconds == 15
    assert config.limits.max_concurrent_streams == 1000 and config.limits.max_queue == 5000
    assert config.ratelimit.backend == "memory" and config.ratelimit.fail_open is True
    upstream = config.upstreams[0]
    assert (upstream.connect_timeout_seconds, upstream.first_byte_timeout_seconds,
            upstream.idle_timeout_seconds, upstream.total_timeout_seconds,
            upstream.max_retries) == (5, 60, 60, 600, 2)


def test_env_overrides_every_scalar(tmp_path: Path) -> None:
    env = {**UPSTREAM_ENV, "GATEWAY_SERVER_PORT": "9000", "GATEWAY_SERVER_UI": "true",
           "GATEWAY_LIMITS_MAX_QUEUE": "7", "GATEWAY_RATELIMIT_BACKEND": "redis",
           "GATEWAY_UPSTREAMS_0_MAX_RETRIES": "4", "GATEWAY_UPSTREAMS_MOCK_ANTHROPIC_BASE_URL": "http://x",
           "GATEWAY_TENANTS_TENANT_B_PRIORITY": "3", "GATEWAY_SERVER_CORS_ORIGINS": '["https://a"]',
           "GATEWAY_CONFIG": "ignored: not an override"}
    config = load_config(config_file(tmp_path), env)
    assert config.server.port == 9000 and config.server.ui is True
    assert config.limits.max_queue == 7 and config.ratelimit.backend == "redis"
    assert config.upstreams[0].max_retries == 4
    assert config.upstreams[1].base_url == "http://x"
    assert config.tenants[1].priority == 3
    assert config.server.cors_origins == ("https://a",)


@pytest.mark.parametrize(
    ("sections", "env", "expected"),
    [
        ({"server": {"colour": "red"}}, {}, "server.colour: unknown key"),
        ({"server": {"port": "8080"}}, {}, "server.port: must be an integer (got '8080')"),
        ({"server": {"ui": "yes"}}, {}, "server.ui: must be true or false"),
        ({"limits": {"max_concurrent_streams": 0}}, {}, "limits.max_concurrent_streams: must be greater than 0"),
        ({"limits": {"queue_timeout_seconds": -1}}, {}, "limits.queue_timeout_seconds: must be greater than 0"),
        ({"ratelimit": {"backend": "etcd"}}, {}, "ratelimit.backend: must be 'memory' or 'redis'"),
        ({}, {"GATEWAY_SERVER_PORT": "99999"}, "GATEWAY_SERVER_PORT (environment) -> server.port: must be less than or equal to 65535"),
        ({}, {"GATEWAY_SERVER_NOPE": "1"}, "server.nope: unknown key"),
        ({}, {"GATEWAY_UPSTREAMS_0_FALLBACKS": '["ghost"]'}, "upstreams[0].fallbacks[0]: names no upstream: 'ghost'"),
        ({}, {"GATEWAY_UPSTREAMS_0_DIALECT": "grpc"}, "upstreams[0].dialect: must be 'openai' or 'anthropic'"),
        ({}, {"GATEWAY_TENANTS_0_KEY_SHA256": "abc123"}, "tenants[0].key_sha256: must be 64 hex characters"),
        ({}, {"GATEWAY_TENANTS_0_MODELS": '["llama-*"]'}, "tenants[0].models: ['llama-*'] routes to no upstream"),
        ({}, {"GATEWAY_TENANTS_0_REQUESTS_PER_MINUTE": "0"}, "tenants[0].requests_per_minute: must be greater than 0"),
        ({}, {"GATEWAY_UPSTREAMS_0_API_KEY_ENV": "NOT_SET", "GATEWAY_UPSTREAMS_1_API_KEY_ENV": "NOT_SET"},
         "upstreams: none is usable"),
        ({"server": {"workers": 2}}, {}, "server.workers: more than 1 worker needs ratelimit.backend"),
        ({}, {"GATEWAY_SERVER_PORT": "abc"}, "GATEWAY_SERVER_PORT (environment) -> server.port: must be an integer (got 'abc')"),
        ({"routes": [{"model": "x", "targets": ["ghost:m"]}]}, {}, "routes[0].targets[0]: names no upstream: 'ghost'"),
        ({"routes": [{"model": "a", "targets": ["mock"], "on_context_overflow": "b"},
                     {"model": "b", "targets": ["mock"], "on_context_overflow": "a"}]}, {}, "routes[0].on_context_overflow: cycle"),
        ({"server": {"admin_key_sha256": "0" * 64}}, {"GATEWAY_TENANTS_0_KEY_SHA256": "0" * 64},
         "tenants[0].key_sha256: a tenant key can't be the admin key"),
        ({}, {"GATEWAY_UPSTREAMS_0_BASE_URL": "ftp://x"}, "upstreams[0].base_url: must start with http:// or https://"),
        ({}, {"GATEWAY_UPSTREAMS_9_NAME": "x"}, "upstreams: GATEWAY_UPSTREAMS_9_NAME names no entry"),
        ({}, {"GATEWAY_TENANTS_1_NAME": "tenant-a"}, "tenants[1].name: duplicate tenant 'tenant-a'"),
        ({"upstreams": []}, {}, "upstreams: required key is missing"),
        ({}, {"GATEWAY_TENANTS_1_KEY_SHA256": "0" * 64, "GATEWAY_TENANTS_0_KEY_SHA256": "0" * 64},
         "tenants[1].key_sha256: the same key is given to two tenants"),
    ],
)
def test_each_bad_config_is_one_line_naming_file_key_and_problem(
    tmp_path: Path, sections: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    path = config_file(tmp_path, **sections)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {**UPSTREAM_ENV, **env})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("[server\nport = 1", "not valid TOML"), ("[server]\nport = 1\n", "upstreams: required key is missing")],
)
def test_unreadable_or_incomplete_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path, UPSTREAM_ENV)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml", UPSTREAM_ENV)


def test_serve_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = config_file(tmp_path, limits={"max_queue": -5})
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
        env={"PATH": "/usr/bin:/bin", **UPSTREAM_ENV}, cwd=REPO, capture_output=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert line["event"] == "config_error"
    assert f"{path}: limits.max_queue:" in line["error"]


def test_serve_without_config_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    assert main(["serve"]) == 2


def test_hash_key_from_argument_and_stdin() -> None:
    from gateway.auth import hash_key

    by_arg = subprocess.run([sys.executable, "-m", "gateway", "hash-key", "my-key"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    by_stdin = subprocess.run([sys.executable, "-m", "gateway", "hash-key"], cwd=REPO, input="my-key\n",
                              capture_output=True, text=True, timeout=30)
    assert by_arg.stdout.strip() == by_stdin.stdout.strip() == hash_key("my-key")
    assert len(by_arg.stdout.strip()) == 64


def test_a_redis_url_that_is_not_one_fails_at_start(tmp_path: Path) -> None:
    path = config_file(tmp_path, ratelimit={"backend": "redis", "redis_url": "http://x"})
    with pytest.raises(ConfigError, match=r"ratelimit\.redis_url: must start with redis://, rediss:// or unix://"):
        load_config(path, UPSTREAM_ENV)


def test_an_upstream_key_in_the_file_is_refused(tmp_path: Path) -> None:
    raw = raw_config(MOCK_URL)
    raw["upstreams"][0]["api_key"] = "sk-in-the-file"
    with pytest.raises(ConfigError, match=r"upstreams\[0\]\.api_key: secrets are never in the file") as caught:
        load_config(write_toml(tmp_path / "c.toml", raw), UPSTREAM_ENV)
    assert "sk-in-the-file" not in str(caught.value)


def test_prices_and_routes_load_and_a_missing_price_field_is_named() -> None:
    raw = raw_config(MOCK_URL, prices={"gpt-4o*": {"input": 2.5, "output": 10}},
                     routes=[{"model": "chat", "targets": ["mock:gpt-4o", "mock-anthropic:claude-3"]}])
    config = config_from_dict(raw, UPSTREAM_ENV, source="<t>")
    assert config.prices["gpt-4o*"].output == 10.0
    assert config.routes[0].targets == ("mock:gpt-4o", "mock-anthropic:claude-3")
    raw["prices"] = {"gpt-4o": {"input": 1}}
    with pytest.raises(ConfigError, match=r"^<t>: prices.gpt-4o.output: required key is missing$"):
        config_from_dict(raw, UPSTREAM_ENV, source="<t>")


def test_an_upstream_whose_key_variable_is_empty_is_disabled_with_a_warning() -> None:
    warnings: list[str] = []
    raw = raw_config(MOCK_URL)
    config = config_from_dict(raw, {"MOCK_OPENAI_KEY": "k", "MOCK_ANTHROPIC_KEY": "",
                                    "GATEWAY_SERVR_PORT": "1"}, source="<t>", warn=warnings.append)
    assert [u.name for u in config.upstreams] == ["mock"]
    assert any("MOCK_ANTHROPIC_KEY is not set: upstream 'mock-anthropic' is disabled" in w for w in warnings)
    assert any(w.startswith("GATEWAY_SERVR_PORT: not a config override") for w in warnings)


def test_an_upstream_without_api_key_env_takes_no_key() -> None:
    raw = raw_config(MOCK_URL)
    del raw["upstreams"][0]["api_key_env"]
    config = config_from_dict(raw, UPSTREAM_ENV, source="<t>")
    assert config.upstreams[0].api_key.get_secret_value() == ""
