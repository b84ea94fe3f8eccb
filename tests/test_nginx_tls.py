"""deploy/nginx-tls.conf: the HTTPS server block nginx.conf includes for TLS termination.

nginx accepts it with a self-signed certificate made here by openssl, its locations are
nginx.conf's verbatim (buffering stays off), and a stream through it over TLS arrives
chunk by chunk.
"""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests._live import (
    REPO,
    free_port,
    live_gateway,
    require_binary,
    run_process,
    stream_chat,
    tail,
    wait_http_ok,
)
from tests.test_nginx import TPS, WORDS, assert_nginx_accepts, nginx_argv, render_conf

TLS_CONF = REPO / "deploy" / "nginx-tls.conf"
LISTEN_LINE = "listen 443 ssl;"
CERT_LINE = "ssl_certificate /etc/nginx/tls/tls.crt;"
KEY_LINE = "ssl_certificate_key /etc/nginx/tls/tls.key;"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_binary("openssl")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return cert, key


def tls_conf(tmp_path: Path, http_port: int, https_port: int, gateway_port: int) -> Path:
    """nginx.conf + the TLS block inside its http {}, every documented line substituted."""
    cert, key = self_signed(tmp_path)
    block = TLS_CONF.read_text()
    for line, value in ((LISTEN_LINE, f"listen 127.0.0.1:{https_port} ssl;"),
                        (CERT_LINE, f"ssl_certificate {cert};"),
                        (KEY_LINE, f"ssl_certificate_key {key};")):  # fmt: skip
        assert len(re.findall(rf"^\s*{re.escape(line)}$", block, re.M)) == 1, line
        block = block.replace(line, value)
    main = render_conf(http_port, [gateway_port])
    head, tail_ = main.rsplit("}", 1)  # the closing brace of http {}
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(f"{head}\n{block}\n}}{tail_}")
    return conf


def server_blocks(text: str) -> list[str]:
    return re.findall(r"^    server \{\n(.*?)^    \}$", text, re.S | re.M) or re.findall(
        r"^server \{\n(.*?)^\}$", text, re.S | re.M
    )


def locations(server: str) -> list[str]:
    return [" ".join(m.split()) for m in re.findall(r"(location [^{]*\{.*?\})", server, re.S)]


def test_tls_block_has_the_plain_servers_locations_and_proxy_settings() -> None:
    (plain,) = server_blocks((REPO / "nginx.conf").read_text())
    (tls,) = server_blocks(TLS_CONF.read_text())
    assert locations(tls) == locations(plain)
    assert len(locations(tls)) == 5
    proxy = sorted(" ".join(line.split()) for line in plain.splitlines()
                   if line.strip().startswith(("proxy_", "client_max_body_size")))  # fmt: skip
    for line in proxy:
        assert line in " ".join(tls.split()), line
    assert "proxy_buffering off;" in locations(tls)[0]


@pytest.mark.nginx
def test_nginx_accepts_the_tls_block(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    conf = tls_conf(tmp_path, free_port(), free_port(), free_port())
    assert_nginx_accepts(nginx, conf.parent, conf)


@pytest.mark.nginx
async def test_a_stream_over_tls_arrives_chunk_by_chunk(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    from gateway.mock import MockSettings

    async with live_gateway(tmp_path, MockSettings(tokens_per_second=TPS, words=WORDS)) as gw:
        http_port, https_port = free_port(), free_port()
        conf = tls_conf(tmp_path, http_port, https_port, gw.port)
        log = conf.parent / "nginx.log"
        context = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
        async with run_process(nginx_argv(nginx, conf.parent, conf), log, cwd=conf.parent) as process:
            # nginx binds every listener before it serves any: plain HTTP up means TLS is too.
            await wait_http_ok(f"http://127.0.0.1:{http_port}/healthz", process, log)
            url = f"https://127.0.0.1:{https_port}"
            connector = aiohttp.TCPConnector(ssl=context)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"{url}/healthz") as health:
                    assert health.status == 200
                result = await stream_chat(session, url, "mock-1", gw.headers)
        assert result.status == 200, tail(log)
        (stream,) = gw.mock_streams
        assert stream.completed
        sent = stream.sent_at
        assert len(result.data_arrivals) == len(sent)
        paced = [i for i in range(len(sent) - 1) if sent[i + 1] - sent[i] > 0.5 / TPS]
        assert len(paced) >= WORDS - 1, "the mock did not pace its chunks"
        late = [i for i in paced if result.data_arrivals[i] >= sent[i + 1]]
        assert not late, f"chunks held back over TLS until a later chunk was sent: {late}"
