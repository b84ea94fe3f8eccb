"""`gateway_upstream_up` across `POST /admin/reload`, through HTTP: every upstream of the new
config has a series (0 only while its breaker is open), a removed upstream's series is gone
and stays gone, and an added upstream's follows its breaker like any other."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import build_app
from gateway.auth import hash_key
from gateway.config import config_from_dict
from gateway.logs import make_logger
from tests._proc import eventually
from tests.conftest import UPSTREAM_ENV, Mock, auth, chat_body, raw_config, write_toml

ADMIN_KEY = "gw-admin-secret"
Client = TestClient[web.Request, web.Application]


def upstream(mock: Mock, name: str, **extra: Any) -> dict[str, Any]:
    """An upstream on the mock serving `{name}-*`, whose breaker opens at its first failure."""
    return {"name": name, "dialect": "openai", "base_url": f"{mock.url}/v1",
            "api_key_env": "MOCK_OPENAI_KEY", "models": [f"{name}-*"], "max_retries": 0,
            "failures_to_trip": 1, "cooldown_seconds": 600, **extra}


async def up_series(client: Client) -> dict[str, float]:
    """`gateway_upstream_up` as exported: upstream -> value."""
    text = await (await client.get("/metrics")).text()
    return {sample.labels["upstream"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "gateway_upstream_up"}


async def post(client: Client, model: str, fault: str = "") -> int:
    headers = {**auth(), "x-mock-fault": fault} if fault else auth()
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model, stream=False), headers=headers)
    await response.read()
    return response.status


async def reload(client: Client, path: Path, raw: dict[str, Any]) -> None:
    write_toml(path, raw)
    answer = await client.post("/admin/reload", headers=auth(ADMIN_KEY))
    assert (answer.status, await answer.json()) == (200, {"status": "reloaded"})


async def test_upstream_up_follows_a_reload(
        aiohttp_client: Any, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UPSTREAM_ENV.items():  # a reload reads the process's env, as a start does
        monkeypatch.setenv(name, value)
    raw = raw_config(mock.url, server={"admin_key_sha256": hash_key(ADMIN_KEY)}, upstreams=[
        upstream(mock, "kept"), upstream(mock, "removed"), upstream(mock, "retuned"),
        upstream(mock, "leaving", first_byte_timeout_seconds=1.0)])
    path = write_toml(tmp_path / "gateway.toml", raw)
    app = build_app(config_from_dict(raw, UPSTREAM_ENV, source=str(path)), make_logger(io.StringIO()),
                    config_path=str(path))
    client: Client = await aiohttp_client(app)
    assert await up_series(client) == {"kept": 1, "removed": 1, "retuned": 1, "leaving": 1}
    for name in ("kept", "removed", "retuned"):  # each breaker opens
        assert await post(client, f"{name}-1+status=500") >= 500
    assert await up_series(client) == {"kept": 0, "removed": 0, "retuned": 0, "leaving": 1}

    # In flight across the reload: `leaving` fails (no first byte) once it is removed.
    in_flight = asyncio.create_task(post(client, "leaving-1+hang"))
    await eventually(lambda: any(r.body and r.body.get("model") == "leaving-1+hang"
                                 for r in mock.state.requests), what="the request at the mock")

    # `kept` stays as it is (its breaker with it), `removed` and `leaving` go, `retuned`'s
    # breaker settings change (a fresh, closed breaker), `added` is new.
    raw["upstreams"] = [upstream(mock, "kept"), upstream(mock, "retuned", cooldown_seconds=300),
                        upstream(mock, "added")]
    await reload(client, path, raw)
    assert await up_series(client) == {"kept": 0, "retuned": 1, "added": 1}

    assert await in_flight == 504  # its breaker trips after the reload: no series comes back
    assert await up_series(client) == {"kept": 0, "retuned": 1, "added": 1}

    assert await post(client, "added-1") == 200  # the added upstream serves...
    assert await up_series(client) == {"kept": 0, "retuned": 1, "added": 1}
    # ...and its breaker is watched (the same target: breakers are per upstream and model,
    # and the upstream is down only while every target of it is)
    assert await post(client, "added-1", fault="status=500") >= 500
    assert await up_series(client) == {"kept": 0, "retuned": 1, "added": 0}
