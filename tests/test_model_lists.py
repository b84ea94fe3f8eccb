"""Provider model lists (issue 21, item 1): an upstream with a glob in `models` is asked for
its own list at start and every `models_refresh_seconds`; `/v1/models` lists what matches the
glob and the tenant's `models`, in the caller's shape, from memory; a failed refresh keeps the
last good list, logs once and is counted; `/v1/models/{id}` is 200 for any routable name."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
from aiohttp.test_utils import TestClient

from gateway.app import build_app
from gateway.auth import hash_key
from gateway.check import describe
from gateway.config import Config, config_from_dict, load_config
from gateway.logs import make_logger
from gateway.mock import MOCK_STATE as MOCK_STATE_KEY
from gateway.mock import MockSettings, start_mock
from gateway.reload import reload_config
from tests._metrics import metric_value
from tests._proc import eventually, free_port, port_open, running
from tests._standin import StandIn, standin
from tests.conftest import REPO
from tests.test_readme import quickstart_toml

APP_KEY = "gw-model-lists-key-0123456789"
PROVIDER_NAMES = ("gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small", "dall-e-3",
                  "claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-4-5")
ANTHROPIC = {"anthropic-version": "2023-06-01"}


def _auth(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {APP_KEY}", **extra}


async def _ids(client: TestClient[Any, Any], **headers: str) -> list[str]:
    response = await client.get("/v1/models", headers=_auth(**headers))
    assert response.status == 200
    return [entry["id"] for entry in (await response.json())["data"]]


async def _until(client: TestClient[Any, Any], expected: list[str], **headers: str) -> list[str]:
    """The listed ids once they are `expected` (the lists arrive in the background)."""

    async def listed() -> bool:
        return await _ids(client, **headers) == expected

    await eventually(listed, what=f"/v1/models lists {expected}")
    return expected


async def test_the_quickstart_config_lists_the_providers_models_in_both_shapes(
    tmp_path: Path, aiohttp_client: Any,
) -> None:
    # One mock plays both providers: its list pages two at a time in Anthropic's shape.
    runner, url = await start_mock(settings=MockSettings(models=PROVIDER_NAMES, models_page=2))
    try:
        path = tmp_path / "gateway.toml"
        path.write_text(quickstart_toml(), encoding="utf-8")
        config = load_config(path, {
            "OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant",
            "GATEWAY_TENANTS_MY_APP_KEY_SHA256": hash_key(APP_KEY),
            "GATEWAY_UPSTREAMS_OPENAI_BASE_URL": f"{url}/v1", "GATEWAY_UPSTREAMS_ANTHROPIC_BASE_URL": url})
        client = await aiohttp_client(build_app(config, make_logger(io.StringIO())))
        listed = ["claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-4-5", "gpt-4o", "gpt-4o-mini",
                  "o3-mini"]  # what matches gpt-*, o* and claude-*; never a glob
        await _until(client, listed)

        base = str(client.make_url(""))
        async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=APP_KEY, max_retries=0) as sdk:
            page = await sdk.models.list()
            assert [m.id for m in page.data] == listed
            owners = {m.id: m.owned_by for m in page.data}
            assert owners["gpt-4o"] == "openai" and owners["claude-opus-4-1"] == "anthropic"
            assert (await sdk.models.retrieve("gpt-4.1-nano")).id == "gpt-4.1-nano"  # routes, unlisted
            for unknown in ("llama-3", "gpt-*"):
                try:
                    await sdk.models.retrieve(unknown)
                    raise AssertionError(f"{unknown} is not a model")
                except openai.NotFoundError:
                    pass
        async with anthropic.AsyncAnthropic(base_url=base, api_key=APP_KEY, max_retries=0) as claude:
            ids = [m.id async for m in claude.models.list()]
            assert ids == listed
            assert (await claude.models.retrieve("claude-opus-4-1")).type == "model"
        body = await (await client.get("/v1/models", headers=_auth(**ANTHROPIC))).json()
        assert (body["has_more"], body["first_id"], body["last_id"]) == (False, listed[0], listed[-1])

        # Asked with each dialect's auth; Anthropic's list page by page, after the last id.
        lists = runner.app[MOCK_STATE_KEY].model_lists
        openai_asks = [r for r in lists if "anthropic-version" not in r.headers]
        anthropic_asks = [r for r in lists if "anthropic-version" in r.headers]
        assert openai_asks[0].headers["authorization"] == "Bearer sk-openai"
        assert [r.query.get("after_id") for r in anthropic_asks[:4]] == [
            None, "gpt-4o-mini", "text-embedding-3-small", "claude-haiku-4-5"]
        assert all(r.headers["x-api-key"] == "sk-ant" and "authorization" not in r.headers
                   for r in anthropic_asks)
    finally:
        await runner.cleanup()




def _config(provider: StandIn, tenant_models: tuple[str, ...] = ("*",), **upstream: Any) -> Config:
    raw = {
        "upstreams": [{"name": "p", "dialect": "openai", "base_url": f"{provider.url}/v1",
                       "api_key_env": "P_KEY", "models": ["fixed-1", "gpt-*"], **upstream}],
        "tenants": [{"name": "t", "key_sha256": hash_key(APP_KEY), "models": list(tenant_models)}],
    }
    return config_from_dict(raw, {"P_KEY": "sk-p"}, source="<test>")


async def test_the_tenants_models_narrow_the_list(aiohttp_client: Any) -> None:
    async with standin(models=["gpt-4o", "gpt-4o-mini", "gpt-5", "whisper-1"]) as provider:
        config = _config(provider, ("gpt-4o*", "fixed-*"))
        client = await aiohttp_client(build_app(config, make_logger(io.StringIO())))
        expected = ["fixed-1", "gpt-4o", "gpt-4o-mini"]
        await _until(client, expected)
        assert (await client.get("/v1/models/gpt-5", headers=_auth())).status == 404  # not this tenant's
        assert (await client.get("/v1/models/gpt-4o-2024-08-06", headers=_auth())).status == 200


async def test_a_failed_refresh_keeps_the_last_list_logs_once_and_is_counted(aiohttp_client: Any) -> None:
    async with standin(models=["gpt-4o"]) as provider:
        log = io.StringIO()
        client = await aiohttp_client(build_app(
            _config(provider, models_refresh_seconds=0.05), make_logger(log)))
        await _until(client, ["fixed-1", "gpt-4o"])

        provider.settings["models_status"] = 503

        async def count(result: str) -> float:
            text = await (await client.get("/metrics")).text()
            if f'result="{result}"' not in text:
                return 0.0  # no such refresh yet
            return metric_value(text, "gateway_models_refresh_total", upstream="p", result=result)

        await eventually(lambda: _ge(count("error"), 6), what="six failed refreshes")
        assert await _ids(client) == ["fixed-1", "gpt-4o"]  # the last good list, still served
        # The list is not traffic: its failures trip no breaker and count no upstream error.
        text = await (await client.get("/metrics")).text()
        assert metric_value(text, "gateway_upstream_up", upstream="p") == 1
        assert "gateway_upstream_errors_total{" not in text
        events = [orjson.loads(line)["event"] for line in log.getvalue().splitlines()]
        assert events.count("models_refresh_failed") == 1
        failed = next(orjson.loads(line) for line in log.getvalue().splitlines()
                      if "models_refresh_failed" in line)
        assert failed["upstream"] == "p" and "503" in failed["error"] and failed["kept"] == 1

        provider.settings.update(models_status=200, models=["gpt-4o", "gpt-5"])
        await _until(client, ["fixed-1", "gpt-4o", "gpt-5"])
        assert await count("ok") >= 2
        assert '"models_refresh_recovered"' in log.getvalue()


async def _ge(value: Any, floor: float) -> bool:
    return bool(await value >= floor)


async def test_the_list_never_waits_on_a_hanging_provider(aiohttp_client: Any) -> None:
    async with standin(models=["gpt-4o"], models_hang=True) as provider:
        client = await aiohttp_client(build_app(_config(provider), make_logger(io.StringIO())))
        await eventually(lambda: provider.model_lists(), what="the list asked for")
        assert await _ids(client) == ["fixed-1"]  # answered while the provider's list hangs
        assert (await client.get("/v1/models/gpt-4o", headers=_auth())).status == 200


async def test_the_list_request_carries_the_upstreams_auth_headers_and_query(aiohttp_client: Any) -> None:
    async with standin(models=["gpt-4o"], id_prefix="models/") as provider:
        config = _config(provider, auth_header="api-key", headers={"x-static": "s"},
                         query={"api-version": "preview"})
        client = await aiohttp_client(build_app(config, make_logger(io.StringIO())))
        # Gemini's OpenAI endpoint names its models `models/...`: chat takes them bare.
        await _until(client, ["fixed-1", "gpt-4o"])
        ask = provider.model_lists()[0]
    assert (ask.path, ask.query) == ("/v1/models", {"api-version": "preview"})
    assert ask.headers["api-key"] == "sk-p" and ask.headers["x-static"] == "s"
    assert "authorization" not in ask.headers


async def test_anthropic_lists_are_read_page_by_page(aiohttp_client: Any) -> None:
    names = [f"claude-{i:02d}" for i in range(7)]
    async with standin(models=names, page_size=3) as provider:
        config = _config(provider, dialect="anthropic", models=["claude-*"], query={"beta": "true"})
        client = await aiohttp_client(build_app(config, make_logger(io.StringIO())))
        await _until(client, names, **ANTHROPIC)
        asks = provider.model_lists()[:3]
    assert [a.query.get("after_id") for a in asks] == [None, "claude-02", "claude-05"]
    assert all(a.query["limit"] == "1000" and a.query["beta"] == "true" for a in asks)
    assert all(a.headers["anthropic-version"] for a in asks)
    assert all(a.path == "/v1/models" and a.headers["x-api-key"] == "sk-p" for a in asks)


def test_check_config_says_which_upstreams_are_listed_from_the_provider() -> None:
    raw = {
        "upstreams": [
            {"name": "openai", "dialect": "openai", "base_url": "https://api.openai.com/v1",
             "models": ["gpt-*", "o*"], "models_refresh_seconds": 300},
            {"name": "local", "dialect": "openai", "base_url": "http://127.0.0.1:8000/v1",
             "models": ["llama-3.1-8b"]},
        ],
        "tenants": [{"name": "t", "key_sha256": "a" * 64}],
    }
    text = describe(config_from_dict(raw, {}, source="<test>"))
    rows = {line.split()[0]: line for line in text.split("upstreams\n", 1)[1].splitlines()[2:4]}
    assert "the provider's list matching gpt-*, o* (GET /models every 300s)" in rows["openai"]
    assert rows["local"].endswith("its concrete names")


async def test_a_reload_asks_a_new_upstream_for_its_list_at_once(tmp_path: Path, aiohttp_client: Any) -> None:
    async with standin(models=["gpt-4o", "mistral-large-latest"]) as provider:
        first = {"upstreams": [{"name": "p", "dialect": "openai", "base_url": f"{provider.url}/v1",
                                "models": ["fixed-1"]}],
                 "tenants": [{"name": "t", "key_sha256": hash_key(APP_KEY)}]}
        path = tmp_path / "gw.toml"
        path.write_text(_toml(first))
        app = build_app(load_config(path, {}), make_logger(io.StringIO()), config_path=str(path))
        client = await aiohttp_client(app)
        assert await _ids(client) == ["fixed-1"] and provider.model_lists() == []  # no glob: not asked
        second = {**first, "upstreams": [*first["upstreams"], {
            "name": "mistral", "dialect": "openai", "base_url": f"{provider.url}/mistral/v1",
            "models": ["mistral-*"], "models_refresh_seconds": 3600}]}
        path.write_text(_toml(second))
        assert reload_config(app, {}) is None
        await _until(client, ["fixed-1", "mistral-large-latest"])
        assert [ask.path for ask in provider.model_lists()] == ["/mistral/v1/models"]


def _toml(raw: dict[str, Any]) -> str:
    from bench.config import toml_text

    return toml_text(raw)


async def test_the_mock_lists_its_models_in_both_shapes_paginated(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "mock-upstream", "--port", str(port),
            "--models", "m-1,m-2,m-3,m-4,m-5"]
    async with running(argv, tmp_path / "mock.log", cwd=REPO) as mock:
        await mock.ready(port_open(port), what="the mock listening")
        base = f"http://127.0.0.1:{port}"
        async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0) as sdk:
            assert [m.id for m in (await sdk.models.list()).data] == ["m-1", "m-2", "m-3", "m-4", "m-5"]
        async with anthropic.AsyncAnthropic(base_url=base, api_key="k", max_retries=0) as claude:
            first = await claude.models.list(limit=2)
            assert [m.id for m in first.data] == ["m-1", "m-2"] and first.has_more
            assert [m.id async for m in await claude.models.list(limit=2)] == [
                "m-1", "m-2", "m-3", "m-4", "m-5"]  # the SDK follows after_id to the end
