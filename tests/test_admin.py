"""The admin routes over HTTP: 404 without an admin key, 401 for any other key (a tenant's
included), `/admin/tenants` numbers, and `POST /admin/reload` answering 200 or 400."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import build_app
from gateway.auth import hash_key
from gateway.config import config_from_dict
from gateway.logs import make_logger
from tests.conftest import (
    CLIENT_KEY,
    CLIENT_KEY_B,
    UPSTREAM_ENV,
    GatewayFactory,
    Mock,
    auth,
    chat_body,
    raw_config,
    write_toml,
)

ADMIN_KEY = "gw-admin-secret"
PRICES = {"mock-*": {"input": 1.0, "output": 2.0}}


def tenants(**extra_a: Any) -> list[dict[str, Any]]:
    return [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "requests_per_minute": 10,
             "tokens_per_minute": 100_000, **extra_a},
            {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B), "priority": 10}]


async def test_admin_routes_are_404_without_an_admin_key(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    assert (await gateway.client.get("/admin/tenants", headers=auth(ADMIN_KEY))).status == 404
    assert (await gateway.client.post("/admin/reload", headers=auth(ADMIN_KEY))).status == 404


async def test_admin_routes_refuse_a_missing_wrong_or_tenant_key(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"admin_key_sha256": hash_key(ADMIN_KEY)})
    for headers in ({}, auth("wrong"), auth(CLIENT_KEY), {"x-api-key": CLIENT_KEY_B}):
        for method, path in (("GET", "/admin/tenants"), ("POST", "/admin/reload")):
            response = await gateway.client.request(method, path, headers=headers)
            assert response.status == 401, (headers, path)


async def test_admin_tenants_reports_limits_remaining_spend_and_streams(
        start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"admin_key_sha256": hash_key(ADMIN_KEY)}, prices=PRICES,
                                  tenants=tenants(budget_usd=5.0, budget_period="total"))
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(stream=False, max_tokens=100), headers=auth())
    assert response.status == 200
    cost = float(response.headers["x-gateway-cost-usd"])
    remaining_requests = int(response.headers["x-ratelimit-remaining-requests"])
    remaining_tokens = int(response.headers["x-ratelimit-remaining-tokens"])
    answer = await gateway.client.get("/admin/tenants", headers=auth(ADMIN_KEY))
    assert answer.status == 200
    by_name = {t["name"]: t for t in (await answer.json())["tenants"]}
    a, b = by_name["tenant-a"], by_name["tenant-b"]
    assert a["limits"] == {"requests_per_minute": 10, "tokens_per_minute": 100_000}
    # a minute's refill is 10 requests: within this test at most one comes back
    assert remaining_requests <= a["remaining"]["requests"] <= remaining_requests + 1
    # tokens were taken at admission; the bucket refills ~1,667 a second, so the admin view
    # reads at least what the answer said and at most a full bucket
    assert remaining_tokens < 100_000
    assert remaining_tokens <= a["remaining"]["tokens"] <= 100_000
    assert a["budget"]["budget_usd"] == 5.0
    assert a["budget"]["spent_usd"] == cost
    assert a["budget"]["remaining_usd"] == round(5.0 - cost, 6)
    assert a["budget"]["period"] == "total"
    assert a["active_streams"] == 0
    assert b["budget"] is None
    assert b["remaining"]["requests"] == b["limits"]["requests_per_minute"]


async def test_admin_tenants_counts_a_stream_in_flight(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"admin_key_sha256": hash_key(ADMIN_KEY)})
    stream = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("mock-1+tps=10,words=50"), headers=auth())
    await stream.content.readuntil(b"\n\n")
    answer = await (await gateway.client.get("/admin/tenants", headers=auth(ADMIN_KEY))).json()
    assert {t["name"]: t["active_streams"] for t in answer["tenants"]} == {"tenant-a": 1, "tenant-b": 0}
    stream.close()


async def test_admin_reload_answers_200_then_400_and_keeps_the_good_config(
        aiohttp_client: Any, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UPSTREAM_ENV.items():  # a reload reads the process's env, as a start does
        monkeypatch.setenv(name, value)
    raw = raw_config(mock.url, server={"admin_key_sha256": hash_key(ADMIN_KEY)})
    path = write_toml(tmp_path / "gateway.toml", raw)
    log = io.StringIO()
    app = build_app(config_from_dict(raw, UPSTREAM_ENV, source=str(path)), make_logger(log),
                    config_path=str(path))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    new_key = "gw-client-C-new"
    raw["tenants"] = [*raw["tenants"], {"name": "tenant-c", "key_sha256": hash_key(new_key)}]
    write_toml(path, raw)
    assert (await client.get("/v1/models", headers=auth(new_key))).status == 401
    reloaded = await client.post("/admin/reload", headers=auth(ADMIN_KEY))
    assert (reloaded.status, await reloaded.json()) == (200, {"status": "reloaded"})
    assert (await client.get("/v1/models", headers=auth(new_key))).status == 200

    raw["tenants"][2]["key_sha256"] = "not-a-hash"
    write_toml(path, raw)
    failed = await client.post("/admin/reload", headers=auth(ADMIN_KEY))
    assert failed.status == 400
    error = (await failed.json())["error"]
    assert error.startswith(f"{path}: tenants[2].key_sha256")
    assert (await client.get("/v1/models", headers=auth(new_key))).status == 200
    lines = [orjson.loads(line) for line in log.getvalue().splitlines()]
    assert [line["error"] for line in lines if line["event"] == "config_reload_failed"] == [error]
    assert len([line for line in lines if line["event"] == "config_reloaded"]) == 1
