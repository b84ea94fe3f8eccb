"""The repo's nginx.conf in front of a real gateway: nothing is buffered.

The live tests run Debian's nginx from the repository's nginx.conf (ports
substituted exactly as its header comment documents) in front of
`python -m gateway serve` and the mock upstream, and watch the bytes arrive.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

from tests._live import (
    CLIENT_KEY,
    REPO,
    LiveGateway,
    chat_body,
    free_port,
    live_gateway,
    require_binary,
    run_process,
    stream_chat,
    tail,
    wait_http_ok,
)

NGINX_CONF = REPO / "nginx.conf"
LISTEN_LINE = "listen 80;"
UPSTREAM_LINE = "server 127.0.0.1:8080;"
TPS = 10  # mock pacing: one content chunk every 100 ms
WORDS = 8


def render_conf(listen_port: int, upstream_ports: list[int], text: str | None = None) -> str:
    """nginx.conf with the two documented lines substituted, nothing else."""
    text = NGINX_CONF.read_text() if text is None else text
    for line in (LISTEN_LINE, UPSTREAM_LINE):
        assert len(re.findall(rf"^\s*{re.escape(line)}$", text, re.M)) == 1, line
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports)
    text = re.sub(rf"^\s*{re.escape(UPSTREAM_LINE)}$", servers, text, flags=re.M)
    return text.replace(LISTEN_LINE, f"listen 127.0.0.1:{listen_port};")


def nginx_argv(nginx: str, prefix: Path, conf: Path) -> list[str]:
    return [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]


def assert_nginx_accepts(nginx: str, prefix: Path, conf: Path) -> None:
    """`nginx -t` on `conf`: it must say the test is successful."""
    argv = nginx_argv(nginx, prefix, conf)
    argv[argv.index("-g") : argv.index("-g") + 2] = ["-t"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@contextlib.asynccontextmanager
async def live_nginx(tmp_path: Path, upstream_port: int) -> AsyncIterator[tuple[str, Path]]:
    nginx = require_binary("nginx")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    port = free_port()
    conf.write_text(render_conf(port, [upstream_port]))
    log = prefix / "nginx.log"
    async with run_process(nginx_argv(nginx, prefix, conf), log, cwd=prefix) as process:
        url = f"http://127.0.0.1:{port}"
        await wait_http_ok(f"{url}/healthz", process, log)
        yield url, log


@contextlib.asynccontextmanager
async def gateway_behind_nginx(
    tmp_path: Path, heartbeat_seconds: float = 15
) -> AsyncIterator[tuple[LiveGateway, str, Path]]:
    require_binary("nginx")  # skip before starting anything
    from gateway.mock import MockSettings

    settings = MockSettings(tokens_per_second=TPS, words=WORDS)
    async with live_gateway(tmp_path, settings, heartbeat_seconds=heartbeat_seconds) as gw:
        async with live_nginx(tmp_path, gw.port) as (url, log):
            try:
                yield gw, url, log
            except BaseException:
                print(f"--- gateway log ---\n{tail(gw.log)}\n--- nginx log ---\n{tail(log)}")
                raise


# -- the file itself ----------------------------------------------------------


def location_block(text: str, pattern: str) -> str:
    match = re.search(rf"location\s+{pattern}\s*\{{(.*?)\n\s*\}}", text, re.S)
    assert match, f"no location {pattern}"
    return match.group(1)


def seconds(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)([smh]?)", value)
    assert match, value
    return int(match.group(1)) * units[match.group(2) or "s"]


def test_streaming_location_turns_off_every_buffer() -> None:
    text = NGINX_CONF.read_text()
    streaming = location_block(text, r"~ \^/\(v1/\|api/chat/stream\)")
    for directive in (
        "proxy_pass http://gateway;",
        "proxy_buffering off;",
        "proxy_cache off;",
        "proxy_request_buffering off;",
    ):
        assert directive in streaming, directive
    for directive in (
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header X-Request-ID $gateway_request_id;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "gzip off;",
    ):
        assert directive in text, directive
    assert re.search(r"upstream gateway \{[^}]*keepalive \d+;", text)
    assert not re.search(r"^\s*gzip\s+on;", text, re.M)


def test_timeouts_and_body_size_fit_the_gateway() -> None:
    text = NGINX_CONF.read_text()
    server = tomllib.loads((REPO / "deploy" / "gateway.toml").read_text())["server"]
    streaming = location_block(text, r"~ \^/\(v1/\|api/chat/stream\)")
    (read_timeout,) = re.findall(r"proxy_read_timeout (\w+);", streaming)
    # Far above the heartbeat, so only a wedged stream ever times out.
    assert seconds(read_timeout) >= 10 * server["heartbeat_seconds"]
    (body,) = re.findall(r"client_max_body_size (\d+)([km]?);", text)
    limit = int(body[0]) * {"": 1, "k": 1024, "m": 1024 * 1024}[body[1]]
    assert limit >= server["max_body_bytes"]


def test_documented_substitutions_appear_once() -> None:
    text = NGINX_CONF.read_text()
    header = text.split("\n\n", 1)[0]
    assert LISTEN_LINE in header and UPSTREAM_LINE in header
    rendered = render_conf(18000, [18001, 18002])
    assert "listen 127.0.0.1:18000;" in rendered
    assert "server 127.0.0.1:18001;\n        server 127.0.0.1:18002;" in rendered


@pytest.mark.nginx
@pytest.mark.parametrize("name", ["nginx.conf", "deploy/nginx.compose.conf"])
def test_nginx_accepts_the_config(tmp_path: Path, name: str) -> None:
    nginx = require_binary("nginx")
    text = (REPO / name).read_text()
    # The compose file names docker hosts; point them at loopback to test it here.
    servers = re.compile(r"^\s*server gateway-\d+:8080;\n", re.M)
    if servers.search(text):
        text = servers.sub("", text)
        text = text.replace("upstream gateway {", f"upstream gateway {{\n{UPSTREAM_LINE}")
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_conf(free_port(), [free_port(), free_port()], text))
    assert_nginx_accepts(nginx, tmp_path, conf)


# -- live: nginx in front of the gateway ---------------------------------------


@pytest.mark.nginx
async def test_every_chunk_arrives_before_the_next_is_sent(tmp_path: Path) -> None:
    async with gateway_behind_nginx(tmp_path) as (gw, url, _log):
        async with aiohttp.ClientSession() as session:
            result = await stream_chat(session, url, "mock-1", gw.headers)
        assert result.status == 200
        (stream,) = gw.mock_streams
        assert stream.completed
        sent = stream.sent_at
        # One data line per upstream event, in order (heartbeats are comments).
        assert len(result.data_arrivals) == len(sent)
        paced = [i for i in range(len(sent) - 1) if sent[i + 1] - sent[i] > 0.5 / TPS]
        assert len(paced) >= WORDS - 1, "the mock did not pace its chunks"
        late = [
            (i, round(result.data_arrivals[i] - sent[i + 1], 3))
            for i in paced
            if result.data_arrivals[i] >= sent[i + 1]
        ]
        assert not late, f"chunks held back until a later chunk was sent: {late}"


@pytest.mark.nginx
async def test_heartbeats_reach_the_client_during_a_silence(tmp_path: Path) -> None:
    heartbeat, silence = 0.5, 2.5
    async with gateway_behind_nginx(tmp_path, heartbeat_seconds=heartbeat) as (gw, url, _log):
        async with aiohttp.ClientSession() as session:
            model = f"mock-1+silence={silence}@2,words=4"
            result = await stream_chat(session, url, model, gw.headers)
        assert result.status == 200
        (stream,) = gw.mock_streams
        assert stream.completed
        pings = result.arrivals_of(b": ping")
        # The silence starts after the head event and two content chunks.
        quiet_from, quiet_until = stream.sent_at[2], stream.sent_at[3]
        during = [t for t in pings if quiet_from < t < quiet_until]
        assert len(during) >= 2, (pings, quiet_from, quiet_until)
        assert len(result.data_arrivals) == len(stream.sent_at)


@pytest.mark.nginx
async def test_openai_sdk_streams_through_nginx(tmp_path: Path) -> None:
    async with gateway_behind_nginx(tmp_path) as (gw, url, _log):
        async with openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30
        ) as via_nginx:
            texts = []
            direct = via_nginx.with_options(base_url=f"{gw.url}/v1")
            for client in (via_nginx, direct):
                stream = await client.chat.completions.create(
                    model="mock-1",
                    messages=[{"role": "user", "content": "say something"}],
                    stream=True,
                )
                chunks = [chunk async for chunk in stream]
                texts.append(
                    "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                )
                assert any(c.choices and c.choices[0].finish_reason for c in chunks)
        assert len(texts[0].split()) == WORDS
        assert texts[0] == texts[1]


@pytest.mark.nginx
async def test_stream_headers_and_request_id_pass_through(tmp_path: Path) -> None:
    async with gateway_behind_nginx(tmp_path) as (gw, url, log):
        async with aiohttp.ClientSession() as session:
            headers = {**gw.headers, "X-Request-ID": "rid-through-nginx-1"}
            result = await stream_chat(session, url, "mock-1", headers)
            assert result.status == 200
            assert result.headers["Content-Type"].startswith("text/event-stream")
            assert result.headers["X-Accel-Buffering"] == "no"
            assert result.headers["Cache-Control"] == "no-cache"
            assert "Content-Encoding" not in result.headers
            assert result.headers["x-request-id"] == "rid-through-nginx-1"
            assert gw.mock_streams[-1].request_id == "rid-through-nginx-1"

            # Without one, nginx's $request_id is the id end to end.
            result = await stream_chat(session, url, "mock-1", gw.headers)
            rid = result.headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
            assert f"rid={rid}" in log.read_text()

            # Metrics are scraped per replica, never through the balancer.
            async with session.get(f"{url}/metrics") as resp:
                assert resp.status == 404


@pytest.mark.nginx
async def test_oversized_body_gets_the_gateways_413(tmp_path: Path) -> None:
    async with gateway_behind_nginx(tmp_path) as (gw, url, _log):
        body = json.dumps(chat_body("mock-1", content="x" * (1024 * 1024 + 1024))).encode()
        headers = {**gw.headers, "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{url}/v1/chat/completions", data=io.BytesIO(body), headers=headers
            ) as resp:
                assert resp.status == 413
                error = await resp.json(content_type=None)
        # The OpenAI-shaped error of the gateway, not nginx's HTML page.
        assert set(error["error"]) >= {"message", "type", "code"}
