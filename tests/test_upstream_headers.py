"""`auth_header`, `headers` and `query` of an upstream: what reaches the provider, over real
sockets, and how a bad value is reported. The client's own key never goes upstream, and no
client header can stand in for the provider key."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest

from gateway.app import build_app
from gateway.auth import hash_key
from gateway.config import Config, config_from_dict
from gateway.errors import ConfigError
from gateway.logs import make_logger
from tests._standin import standin
from tests.conftest import CLIENT_KEY, chat_body

PROVIDER_KEY = "provider-SECRET-key-42"


def _config(url: str, **upstream: Any) -> Config:
    raw = {
        "upstreams": [{"name": "p", "dialect": "openai", "base_url": url, "api_key_env": "P_KEY",
                       "models": ["m-1"], **upstream}],
        "tenants": [{"name": "t", "key_sha256": hash_key(CLIENT_KEY)}],
    }
    return config_from_dict(raw, {"P_KEY": PROVIDER_KEY}, source="<test>")


async def _send(aiohttp_client: Any, config: Config, path: str = "/v1/chat/completions",
                body: dict[str, Any] | None = None, **headers: str) -> None:
    client = await aiohttp_client(build_app(config, make_logger(io.StringIO())))
    response = await client.post(path, json=body or chat_body("m-1"),
                                 headers={"Authorization": f"Bearer {CLIENT_KEY}", **headers})
    assert response.status == 200, await response.text()
    await response.read()


async def test_azure_style_key_header_static_headers_and_query(aiohttp_client: Any) -> None:
    async with standin() as provider:
        config = _config(f"{provider.url}/openai/v1", auth_header="api-key",
                         headers={"x-static": "from-config"}, query={"api-version": "preview"})
        # The client tries to smuggle its own credentials and to override the static header.
        await _send(aiohttp_client, config, **{"api-key": "client-api-key", "x-static": "from-client",
                                               "x-goog-api-key": "client-goog", "x-other": "kept"})
        (seen,) = provider.posts()
    assert seen.path == "/openai/v1/chat/completions"
    assert seen.query == {"api-version": "preview"}
    assert seen.headers.getall("api-key") == [PROVIDER_KEY]
    assert "authorization" not in seen.headers and "x-goog-api-key" not in seen.headers
    assert seen.headers.getall("x-static") == ["from-config"]
    assert seen.headers["x-other"] == "kept"
    assert CLIENT_KEY not in str(dict(seen.headers))


@pytest.mark.parametrize(("auth_header", "expected"), [
    ("authorization", ("authorization", f"Bearer {PROVIDER_KEY}")),
    ("x-goog-api-key", ("x-goog-api-key", PROVIDER_KEY)),
    (None, ("x-api-key", PROVIDER_KEY)),  # the anthropic dialect's own
])
async def test_anthropic_dialect_key_in_the_header_asked_for(
    aiohttp_client: Any, auth_header: str | None, expected: tuple[str, str],
) -> None:
    extra = {"auth_header": auth_header} if auth_header else {}
    async with standin() as provider:
        config = _config(provider.url, dialect="anthropic", headers={"anthropic-beta": "b-1"}, **extra)
        body = {"model": "m-1", "max_tokens": 8, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        await _send(aiohttp_client, config, "/v1/messages", body, **{"x-api-key": CLIENT_KEY})
        (seen,) = provider.posts()
    name, value = expected
    assert seen.path == "/v1/messages" and seen.query == {}
    assert seen.headers.getall(name) == [value]
    credentials = {"authorization", "x-api-key", "api-key", "x-goog-api-key"}
    assert {h.lower() for h in seen.headers} & credentials == {name}
    assert seen.headers["anthropic-version"] and seen.headers["anthropic-beta"] == "b-1"


async def test_an_upstream_without_a_key_gets_no_credentials(aiohttp_client: Any) -> None:
    async with standin() as provider:
        config = _config(f"{provider.url}/v1", api_key_env="", query={"a": "1", "b": "x y"})
        await _send(aiohttp_client, config)
        (seen,) = provider.posts()
    assert seen.query == {"a": "1", "b": "x y"}
    assert not {"authorization", "api-key", "x-api-key"} & {h.lower() for h in seen.headers}


BASE: dict[str, Any] = {
    "upstreams": [{"name": "az", "dialect": "openai", "base_url": "https://r.openai.azure.com/openai/v1",
                   "models": ["gpt-*"]}],
    "tenants": [{"name": "t", "key_sha256": "a" * 64}],
}


@pytest.mark.parametrize(("upstream", "message"), [
    ({"auth_header": "bearer"},
     "upstreams[0].auth_header: must be 'authorization', 'api-key', 'x-api-key' or 'x-goog-api-key'"),
    ({"headers": {"Bad Name": "x"}}, "upstreams[0].headers.Bad Name: must be an HTTP header name"),
    ({"headers": {"x-a": "one\r\nx-b: two"}}, "upstreams[0].headers.x-a: must be one line"),
    ({"headers": {"Authorization": "Bearer x"}},
     "upstreams[0].headers.Authorization: the gateway sets this header itself"),
    ({"headers": {"api-key": "x"}}, "upstreams[0].headers.api-key: the gateway sets this header itself"),
    ({"headers": {"x-a": 1}}, "upstreams[0].headers.x-a: must be a string"),
    ({"headers": "x"}, "upstreams[0].headers: must be a table"),
    ({"query": {"": "x"}}, 'upstreams[0].query."": must not be empty'),
    ({"query": {"v": 2}}, "upstreams[0].query.v: must be a string"),
    ({"models_refresh_seconds": 0}, "upstreams[0].models_refresh_seconds: must be greater than 0"),
    ({"auth_headr": "api-key"}, "upstreams[0].auth_headr: unknown key (did you mean `auth_header`?)"),
])
def test_bad_values_are_one_line_in_our_words(upstream: dict[str, Any], message: str) -> None:
    raw = copy.deepcopy(BASE)
    raw["upstreams"][0].update(upstream)
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, {}, source="gw.toml")
    assert str(caught.value).startswith(f"gw.toml: {message}")
    assert "\n" not in str(caught.value)


def test_the_new_keys_have_defaults_and_env_overrides() -> None:
    default = config_from_dict(copy.deepcopy(BASE), {}, source="gw.toml").upstreams[0]
    assert (default.auth_header, default.headers, default.query, default.models_refresh_seconds) == (
        None, {}, {}, 600)
    env = {"GATEWAY_UPSTREAMS_AZ_AUTH_HEADER": "api-key",
           "GATEWAY_UPSTREAMS_AZ_QUERY": '{ api-version = "preview" }',
           "GATEWAY_UPSTREAMS_AZ_HEADERS": '{ x-ms-client = "gw" }',
           "GATEWAY_UPSTREAMS_0_MODELS_REFRESH_SECONDS": "30"}
    upstream = config_from_dict(copy.deepcopy(BASE), env, source="gw.toml").upstreams[0]
    assert upstream.auth_header == "api-key" and upstream.query == {"api-version": "preview"}
    assert upstream.headers == {"x-ms-client": "gw"} and upstream.models_refresh_seconds == 30
    # Still hashable with its dict-valued keys (a Target or a Plan may key a dict).
    assert {upstream: 1}[upstream.model_copy()] == 1
    with pytest.raises(ConfigError) as caught:
        config_from_dict(copy.deepcopy(BASE), {"GATEWAY_UPSTREAMS_AZ_AUTH_HEADER": "bearer"}, source="gw.toml")
    assert "GATEWAY_UPSTREAMS_AZ_AUTH_HEADER (environment) -> upstreams[0].auth_header" in str(caught.value)


def test_an_upstreams_outbound_is_made_once_per_spec_and_anew_for_a_reloaded_one() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.upstream.headers import Outbounds

    outbounds = Outbounds()
    first = _config("http://127.0.0.1:9/v1", headers={"x-team": "a"}).upstreams[0]
    reloaded = _config("http://127.0.0.1:9/v1", headers={"x-team": "b"}).upstreams[0]
    assert outbounds.of(first) is outbounds.of(first)
    client = CIMultiDictProxy(CIMultiDict([("X-Team", "client"), ("Accept", "*/*")]))
    assert outbounds.of(first).headers(client, "rid", False).getall("x-team") == ["a"]
    assert outbounds.of(reloaded).headers(client, "rid", False).getall("x-team") == ["b"]
    assert outbounds.of(reloaded).url == "http://127.0.0.1:9/v1/chat/completions"
