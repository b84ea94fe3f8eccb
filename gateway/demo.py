"""`serve --demo`: the gateway in front of the built-in mock upstream, with a printed key,
so it works on a fresh machine with no provider account."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from structlog.typing import FilteringBoundLogger

from .auth import hash_key
from .config import Config, config_from_dict
from .config.load import read_toml
from .server import serve

DEMO_KEY = "gw-demo-key"
DEMO_UPSTREAM_KEY_ENV = "GATEWAY_DEMO_UPSTREAM_KEY"
_DEMO_UPSTREAM_KEY = "demo-upstream-key"


async def serve_demo(path: str | None, env: Mapping[str, str], logger: FilteringBoundLogger) -> None:
    from .mock import MockSettings, start_mock

    mock_runner, mock_url = await start_mock(
        settings=MockSettings(tokens_per_second=25, words=40, api_key=_DEMO_UPSTREAM_KEY))
    try:
        config = demo_config(path, {**env, DEMO_UPSTREAM_KEY_ENV: _DEMO_UPSTREAM_KEY}, mock_url)

        def banner(url: str) -> None:
            body = '{"model":"mock-1","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'
            print(
                f"\nLLM Stream Gateway demo on {url} (mock upstream at {mock_url})\n"
                f"demo key: {DEMO_KEY}\n"
                f"chat page: {url}/\n"
                f"try:\n  curl -N {url}/v1/chat/completions "
                f"-H 'Authorization: Bearer {DEMO_KEY}' -H 'Content-Type: application/json' "
                f"-d '{body}'\n",
                flush=True,
            )

        await serve(config, logger, banner, demo_key=DEMO_KEY)
    finally:
        await mock_runner.cleanup()


def demo_config(path: str | None, env: Mapping[str, str], mock_url: str) -> Config:
    """Defaults (or the given file's server/limits/ratelimit sections, read and checked as
    `load_config` does), the mock as both an OpenAI and an Anthropic upstream (`mock-*` works
    on both routes, `gpt-*` on the OpenAI one, `claude-*` on the Anthropic one, each reachable
    from any route by translation), made-up prices (or the file's), and one demo tenant; the
    chat page on."""
    given: dict[str, Any] = read_toml(path) if path else {}
    raw = {
        "server": {"host": "127.0.0.1", "ui": True, **given.get("server", {})},
        "limits": given.get("limits", {}),
        "ratelimit": given.get("ratelimit", {}),
        "upstreams": [
            {"name": "mock-openai", "dialect": "openai", "base_url": f"{mock_url}/v1",
             "api_key_env": DEMO_UPSTREAM_KEY_ENV, "models": ["mock-1", "mock-2", "mock-*", "gpt-*"]},
            {"name": "mock-anthropic", "dialect": "anthropic", "base_url": mock_url,
             "api_key_env": DEMO_UPSTREAM_KEY_ENV, "models": ["claude-demo", "claude-*", "mock-*"]},
        ],
        # Made-up prices, so the page shows what an answer would cost.
        "prices": given.get("prices") or {"mock-*": {"input": 0.15, "output": 0.60},
                                          "claude-*": {"input": 1.00, "output": 5.00}},
        "tenants": [{"name": "demo", "key_sha256": hash_key(DEMO_KEY), "models": ["*"]}],
    }
    return config_from_dict(raw, env, source=path or "<demo>")
