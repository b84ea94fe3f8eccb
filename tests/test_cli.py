"""The command line as a user runs it: `serve --demo` streams on a fresh machine."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import aiohttp

from tests._proc import free_port, log_says, port_open, running
from tests.conftest import REPO


async def test_demo_prints_a_key_and_a_curl_command_that_streams(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    async with running([sys.executable, "-m", "gateway", "serve", "--demo"], log, cwd=REPO,
                       env={**os.environ, "GATEWAY_SERVER_PORT": str(port)}) as demo:
        await demo.ready(log_says(log, "Hello!"), what="the demo banner with its curl command")
        await demo.ready(port_open(port), what=f"listening on port {port}")
        banner = demo.output()
        assert f"http://127.0.0.1:{port}" in banner
        key = banner.split("demo key: ")[1].split()[0]
        curl = banner[banner.index("curl -N"):].splitlines()[0].strip()
        assert key in curl and "stream" in curl
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "mock-1", "stream": True, "messages": [{"role": "user", "content": "Hello!"}]},
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                pieces = [piece async for piece in response.content.iter_any()]
            assert response.status == 200
            assert len(pieces) > 5  # paced: it streams, it doesn't arrive in one go
            assert b"".join(pieces).endswith(b"data: [DONE]\n\n")
            async with session.get(f"http://127.0.0.1:{port}/") as page:
                assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        assert await demo.stop(signal.SIGTERM, timeout=15) == 0


async def test_demo_config_serves_mock_models_on_both_routes() -> None:
    from gateway.auth import hash_key
    from gateway.demo import DEMO_KEY, demo_config
    from gateway.routing import Router

    config = demo_config(None, {"GATEWAY_DEMO_UPSTREAM_KEY": "k"}, "http://127.0.0.1:1")
    (tenant,) = config.tenants
    assert tenant.key_sha256 == hash_key(DEMO_KEY) and config.server.ui
    router = Router(config)
    assert router.route(tenant, "mock-1", "openai").targets[0].upstream.dialect == "openai"
    assert router.route(tenant, "mock-1", "anthropic").targets[0].upstream.dialect == "anthropic"
    assert router.route(tenant, "claude-3", "anthropic").targets[0].upstream.dialect == "anthropic"
