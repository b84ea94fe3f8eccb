"""The command line as a user runs it: `serve --demo` streams on a fresh machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import aiohttp

from tests.conftest import REPO, free_port


async def test_demo_prints_a_key_and_a_curl_command_that_streams() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--demo"], cwd=REPO,
        env={**os.environ, "GATEWAY_SERVER_PORT": str(port)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = ""
        deadline = time.monotonic() + 20
        while "curl -N" not in banner and time.monotonic() < deadline:
            banner += proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner
        key = banner.split("demo key: ")[1].split()[0]
        curl = banner[banner.index("curl -N"):].strip()
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
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


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
