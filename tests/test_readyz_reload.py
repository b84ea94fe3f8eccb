"""`/readyz` after a reload that swaps the upstreams: it probes the upstreams of the config in
force now (one snapshot), not the ones the gateway started with, and not a verdict cached for
the old list."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import build_app
from gateway.auth import hash_key
from gateway.config import config_from_dict
from gateway.logs import make_logger
from tests._proc import free_port
from tests.conftest import UPSTREAM_ENV, Mock, auth, raw_config, upstream_spec, write_toml

ADMIN_KEY = "gw-admin-secret"


def _upstream(base_url: str) -> list[dict[str, Any]]:
    return [upstream_spec("only", base_url, models=["mock-*"])]


async def _ready(client: TestClient[web.Request, web.Application]) -> tuple[int, Any]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def test_readyz_probes_the_upstreams_a_reload_swapped_in(
        aiohttp_client: Any, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UPSTREAM_ENV.items():  # a reload reads the process's env, as a start does
        monkeypatch.setenv(name, value)
    nobody = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    raw = raw_config(mock.url, server={"admin_key_sha256": hash_key(ADMIN_KEY)},
                     upstreams=_upstream(nobody))
    path = write_toml(tmp_path / "gateway.toml", raw)
    app = build_app(config_from_dict(raw, UPSTREAM_ENV, source=str(path)), make_logger(io.StringIO()),
                    config_path=str(path))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    assert await _ready(client) == (503, {"status": "no upstream reachable"})

    # The only upstream now is the mock: ready at once (the old verdict was about the old list).
    write_toml(path, {**raw, "upstreams": _upstream(f"{mock.url}/v1")})
    assert (await client.post("/admin/reload", headers=auth(ADMIN_KEY))).status == 200
    assert await _ready(client) == (200, {"status": "ready"})

    # And back: the started-with config is not what is probed either.
    write_toml(path, raw)
    assert (await client.post("/admin/reload", headers=auth(ADMIN_KEY))).status == 200
    assert await _ready(client) == (503, {"status": "no upstream reachable"})
