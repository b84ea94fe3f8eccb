"""The README tells the truth: its two commands are the ones CI runs, and its quickstart config
(read from the README itself) serves real SDK streams once its base_urls point at the mock."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import anthropic
import openai

from gateway.app import build_app
from gateway.auth import hash_key
from gateway.config import load_config
from gateway.logs import make_logger
from tests.conftest import REPO, Mock

README = (REPO / "README.md").read_text(encoding="utf-8")
MARKER = "<!-- quickstart-config -->"
APP_KEY = "gw-readme-app-key-0123456789"


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def quickstart_toml() -> str:
    after = README.split(MARKER, 1)[1]
    assert after.lstrip().startswith("```toml\n"), "the marker must be followed by the ```toml block"
    return fenced_blocks(after, "toml")[0]


def test_the_readme_test_command_is_the_one_ci_runs_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    ci_command = ci[ci.index("# The README's test command, verbatim:") + 1]
    run, test = fenced_blocks(README, "sh")[:2]
    assert test.strip() == ci_command
    assert run.strip() == (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/llm-gateway serve --demo")


async def test_the_quickstart_config_streams_both_dialects(tmp_path: Path, aiohttp_client: Any,
                                                            mock: Mock) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(quickstart_toml(), encoding="utf-8")
    # The README's way: provider keys and the tenant's hash from the environment, and here the
    # two base_urls overridden to reach the mock instead of the providers.
    env = {
        "OPENAI_API_KEY": "sk-readme-openai", "ANTHROPIC_API_KEY": "sk-ant-readme",
        "GATEWAY_TENANTS_MY_APP_KEY_SHA256": hash_key(APP_KEY),
        "GATEWAY_UPSTREAMS_OPENAI_BASE_URL": f"{mock.url}/v1",
        "GATEWAY_UPSTREAMS_ANTHROPIC_BASE_URL": mock.url,
    }
    config = load_config(path, env)
    assert [u.name for u in config.upstreams] == ["openai", "anthropic"]
    assert [t.name for t in config.tenants] == ["my-app"]
    client = await aiohttp_client(build_app(config, make_logger(io.StringIO())))
    base = str(client.make_url(""))

    chat = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=APP_KEY, max_retries=0)
    stream = await chat.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}])
    words = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(words) == 12  # the mock answers 12 words, one chunk each
    await chat.close()

    messages = anthropic.AsyncAnthropic(base_url=base, api_key=APP_KEY, max_retries=0)
    async with messages.messages.stream(
            model="claude-3-5-haiku-latest", max_tokens=64,
            messages=[{"role": "user", "content": "hi"}]) as answer:
        text = [t async for t in answer.text_stream]
        final = await answer.get_final_message()
    assert len(text) == 12
    assert final.stop_reason == "end_turn"
    await messages.close()
    # Both went to the mock: one request per dialect, on its own path.
    first, second = mock.state.requests
    assert (first.path, first.headers["authorization"]) == ("/v1/chat/completions", "Bearer sk-readme-openai")
    assert (second.path, second.headers["x-api-key"]) == ("/v1/messages", "sk-ant-readme")
