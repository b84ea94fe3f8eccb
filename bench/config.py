"""The configs the bench writes: the gateway's TOML (one builder for every run) and nginx's.

The upstream key is never in the file: the gateway reads it from `UPSTREAM_KEY_ENV`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sk-bench-side-by-side"
UPSTREAM_KEY = "bench-upstream-key"
UPSTREAM_KEY_ENV = "BENCH_UPSTREAM_KEY"


def gateway_config(port: int, mock_url: str, *, heartbeat: float = 2.0, streams: int = 10_500,
                   server: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
                   ratelimit: dict[str, Any] | None = None,
                   upstream: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One tenant (`CLIENT_KEY`, limits no run can reach) and the mock as the one upstream;
    each section's keys can be added to or overridden; `extra`: more sections (`streams`)."""
    return {
        # The operator's cap on client connections: the idle rows open `streams` of them.
        "server": {"host": "127.0.0.1", "port": port, "heartbeat_seconds": heartbeat,
                   "max_connections": streams + 500, **(server or {})},
        "limits": {"max_concurrent_streams": streams, "max_queue": streams,
                   "queue_timeout_seconds": 60, **(limits or {})},
        "ratelimit": {**(ratelimit or {})},
        "upstreams": [{
            "name": "mock", "dialect": "openai", "base_url": f"{mock_url}/v1",
            "api_key_env": UPSTREAM_KEY_ENV, "models": ["mock-*"],
            "first_byte_timeout_seconds": 30, "idle_timeout_seconds": 600,
            "total_timeout_seconds": 900, **(upstream or {}),
        }],
        "tenants": [{
            "name": "bench", "key_sha256": hashlib.sha256(CLIENT_KEY.encode()).hexdigest(),
            "requests_per_minute": 1_000_000_000, "tokens_per_minute": 1_000_000_000_000,
        }],
        **(extra or {}),
    }


def toml_text(raw: dict[str, Any]) -> str:
    """TOML for a config dict: tables of scalars and string lists, arrays of such tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return orjson.dumps(str(v)).decode()

    lines: list[str] = []
    for key, section in raw.items():
        entries = [section] if isinstance(section, dict) else section
        for entry in entries:
            lines.append(f"[{key}]" if isinstance(section, dict) else f"[[{key}]]")
            lines += [f"{k} = {value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def nginx_conf(listen: int, upstream_port: int) -> tuple[str, str]:
    """The repo's nginx.conf with its two documented lines substituted (see its header), else
    a minimal streaming proxy config; and which one it is. The upstream is the gateway, or the
    mock itself for the pure-proxy row (its `/v1/` paths are the same)."""
    path = REPO / "nginx.conf"
    if path.exists():
        text, listens = re.subn(r"(?m)^(\s*)listen 80;$", rf"\g<1>listen 127.0.0.1:{listen};",
                                path.read_text())
        text, servers = re.subn(r"(?m)^(\s*)server 127\.0\.0\.1:8080;$",
                                rf"\g<1>server 127.0.0.1:{upstream_port};", text)
        if listens == servers == 1:
            return text, "repo nginx.conf"
    return f"""worker_processes auto; pid nginx.pid; error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
  client_body_temp_path cbt; proxy_temp_path pt; fastcgi_temp_path ft; uwsgi_temp_path ut;
  scgi_temp_path st; access_log off; gzip off;
  upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{listen};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; proxy_request_buffering off;
      proxy_read_timeout 3600s; proxy_pass_request_headers on; }} }}
}}
""", "minimal config (repo nginx.conf missing or changed)"
