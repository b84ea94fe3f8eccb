"""Every provider block in the README is tested (issue 21, item 5): `check-config` accepts it,
and one chat request through it reaches a local stand-in (its base_url's host swapped for the
stand-in's, the path kept) on the path, with the query and headers, that the provider's own
docs give. The model-list request (for a block with a glob) goes to `{base_url}/models` with
the same credentials."""

from __future__ import annotations

import io
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.app import build_app
from gateway.auth import hash_key
from gateway.cli import main
from gateway.config import load_config
from gateway.logs import make_logger
from tests._proc import eventually
from tests._standin import standin
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
APP_KEY = "gw-provider-blocks-key-0123456789"
SECRET = "provider-secret-0123456789"

#: what each provider documents: the chat path under its base_url's host, the header its key
#: goes in (None: no key), and the other headers it asks for. Sources: the providers' API docs
#: (OpenAI API reference; Azure OpenAI v1 API (`/openai/v1`, `api-key`); Anthropic Messages
#: (`/v1/messages`, `x-api-key`, `anthropic-version`); Gemini's OpenAI compatibility page;
#: Mistral, Groq, DeepSeek, OpenRouter, Together AI, vLLM and Ollama's OpenAI-compatibility docs).
DOCUMENTED: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "openai": ("/v1/chat/completions", "authorization", {}),
    "azure-openai": ("/openai/v1/chat/completions", "api-key", {}),
    "anthropic": ("/v1/messages", "x-api-key", {"anthropic-version": "2023-06-01"}),
    "gemini": ("/v1beta/openai/chat/completions", "authorization", {}),
    "mistral": ("/v1/chat/completions", "authorization", {}),
    "groq": ("/openai/v1/chat/completions", "authorization", {}),
    "deepseek": ("/chat/completions", "authorization", {}),
    "openrouter": ("/api/v1/chat/completions", "authorization",
                   {"HTTP-Referer": "https://app.example.com", "X-Title": "My App"}),
    "together": ("/v1/chat/completions", "authorization", {}),
    "vllm": ("/v1/chat/completions", None, {}),
    "ollama": ("/v1/chat/completions", None, {}),
}
CREDENTIALS = {"authorization", "api-key", "x-api-key", "x-goog-api-key"}


def provider_blocks() -> dict[str, str]:
    """`<!-- provider-config: NAME -->` followed by a ```toml block, for each provider."""
    found = re.findall(r"<!-- provider-config: ([\w-]+) -->\s*```toml\n(.*?)^```$", README,
                       flags=re.MULTILINE | re.DOTALL)
    return dict(found)


def test_the_readme_has_a_block_for_every_provider_and_a_table_row_each() -> None:
    assert sorted(provider_blocks()) == sorted(DOCUMENTED)
    table = README.split("### Other providers", 1)[1].split("<!-- provider-config", 1)[0]
    for name in ("OpenAI", "Azure OpenAI", "Anthropic", "Google Gemini", "Mistral", "Groq",
                 "DeepSeek", "OpenRouter", "Together AI", "vLLM", "Ollama"):
        assert f"\n| {name}" in table, name


def _with_tenant(block: str) -> str:
    return block + f'\n[[tenants]]\nname = "my-app"\nkey_sha256 = "{hash_key(APP_KEY)}"\n'


def _env(upstream: dict[str, Any], standin_url: str) -> dict[str, str]:
    """The block's key variable set, and its base_url's host swapped for the stand-in's
    (the README's own override: `GATEWAY_UPSTREAMS_<NAME>_BASE_URL`)."""
    slug = re.sub(r"[^A-Z0-9]+", "_", upstream["name"].upper())
    env = {f"GATEWAY_UPSTREAMS_{slug}_BASE_URL": f'"{standin_url}{urlsplit(upstream["base_url"]).path}"'}
    if upstream["api_key_env"]:
        env[upstream["api_key_env"]] = SECRET
    return env


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_check_config_accepts_the_block(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    block = provider_blocks()[name]
    upstream = tomllib.loads(block)["upstreams"][0]
    path = tmp_path / "gateway.toml"
    path.write_text(_with_tenant(block), encoding="utf-8")
    if upstream["api_key_env"]:
        monkeypatch.setenv(upstream["api_key_env"], SECRET)
    assert main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}: ok" in out and upstream["base_url"] in out
    assert "warning" not in err  # the upstream is enabled: its key variable is set (or none)
    assert SECRET not in out + err


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
async def test_a_request_through_the_block_reaches_the_documented_endpoint(
    name: str, tmp_path: Path, aiohttp_client: Any,
) -> None:
    block = provider_blocks()[name]
    upstream = tomllib.loads(block)["upstreams"][0]
    path_, key_header, headers = DOCUMENTED[name]
    model = upstream["models"][0].replace("*", "x")  # a name the block's first glob routes
    async with standin(models=[model]) as provider:
        path = tmp_path / "gateway.toml"
        path.write_text(_with_tenant(block), encoding="utf-8")
        config = load_config(path, _env(upstream, provider.url))
        client = await aiohttp_client(build_app(config, make_logger(io.StringIO())))
        response = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {APP_KEY}"},
                                     json={"model": model, "stream": True, "max_tokens": 16,
                                           "messages": [{"role": "user", "content": "hi"}]})
        assert response.status == 200, await response.text()
        assert b"Hi" in await response.read()  # the stand-in's answer, in the client's dialect
        (seen,) = provider.posts()
        globbed = any(c in p for p in upstream["models"] for c in "*?[")
        if globbed:
            await eventually(provider.model_lists, what="the model-list request")

    assert seen.path == path_ and seen.query == upstream.get("query", {})
    assert seen.body["model"] == model and seen.body["stream"] is True
    sent = {h.lower() for h in seen.headers}
    if key_header is None:
        assert not sent & CREDENTIALS
    else:
        assert sent & CREDENTIALS == {key_header}
        expected = f"Bearer {SECRET}" if key_header == "authorization" else SECRET
        assert seen.headers.getall(key_header) == [expected]
    for header, value in headers.items():
        assert seen.headers.getall(header) == [value]
    assert APP_KEY not in str(dict(seen.headers))
    if globbed:
        ask = provider.model_lists()[0]
        assert ask.path == path_.removesuffix("/chat/completions").removesuffix("/messages") + "/models"
        assert {h.lower() for h in ask.headers} & CREDENTIALS == (set() if key_header is None else {key_header})
