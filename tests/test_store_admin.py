"""Tenants and keys at runtime through the admin API (in-process gateway, SQLite store in
memory): create, change, delete, issue, list, revoke, and the 400/401/404/409 rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.auth import hash_key
from tests._proc import eventually
from tests.conftest import CLIENT_KEY, Gateway, GatewayFactory, auth, chat_body

ADMIN_KEY = "gw-admin-store-secret"
ADMIN = {"server": {"admin_key_sha256": hash_key(ADMIN_KEY)}}


async def admin_gateway(start_gateway: GatewayFactory, **sections: Any) -> Gateway:
    return await start_gateway(**ADMIN, **sections)


async def post(gateway: Gateway, path: str, body: Any) -> tuple[int, Any]:
    response = await gateway.client.post(path, json=body, headers=auth(ADMIN_KEY))
    return response.status, (await response.json() if response.status != 204 else None)


async def chat(gateway: Gateway, key: str, **headers: str) -> int:
    response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False),
                                         headers={**auth(key), **headers})
    await response.read()
    return response.status


async def test_a_runtime_tenant_and_its_key_serve_at_once_and_a_revoked_key_is_401(
        start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    status, tenant = await post(gateway, "/admin/tenants",
                                {"name": "app-x", "requests_per_minute": 30, "models": ["mock-*"]})
    assert status == 201
    assert tenant["name"] == "app-x" and tenant["source"] == "runtime"
    assert tenant["requests_per_minute"] == 30 and tenant["models"] == ["mock-*"]
    assert tenant["tokens_per_minute"] == 200_000 and tenant["budget_usd"] is None
    status, key = await post(gateway, "/admin/tenants/app-x/keys", {"label": "ci"})
    assert status == 201
    assert key["key"].startswith("gk-") and key["tenant"] == "app-x" and key["label"] == "ci"
    assert key["expires_at"] is None and key["last_used_at"] is None
    assert await chat(gateway, key["key"]) == 200
    line = gateway.request_logs()[-1]
    assert line["tenant"] == "app-x"
    assert await gateway.metric("gateway_requests_total", tenant="app-x", status="200") == 1
    listed = await gateway.client.get("/admin/tenants/app-x/keys", headers=auth(ADMIN_KEY))
    data = (await listed.json())["data"]
    assert [k["id"] for k in data] == [key["id"]]
    assert "key" not in data[0] and key["key"] not in await listed.text()
    assert hash_key(key["key"]) not in await listed.text()
    revoked = await gateway.client.delete(f"/admin/keys/{key['id']}", headers=auth(ADMIN_KEY))
    assert revoked.status == 204
    assert await chat(gateway, key["key"]) == 401
    again = await gateway.client.delete(f"/admin/keys/{key['id']}", headers=auth(ADMIN_KEY))
    assert again.status == 404
    listed = await gateway.client.get("/admin/tenants/app-x/keys", headers=auth(ADMIN_KEY))
    assert (await listed.json())["data"] == []


async def test_limits_of_a_runtime_tenant_apply_and_a_patch_changes_them(
        start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    assert (await post(gateway, "/admin/tenants", {"name": "tiny", "requests_per_minute": 1}))[0] == 201
    _, key = await post(gateway, "/admin/tenants/tiny/keys", {})
    assert await chat(gateway, key["key"]) == 200
    assert await chat(gateway, key["key"]) == 429
    response = await gateway.client.patch("/admin/tenants/tiny", json={"priority": 5},
                                          headers=auth(ADMIN_KEY))
    assert response.status == 200
    body = await response.json()
    assert body["priority"] == 5 and body["requests_per_minute"] == 1 and body["source"] == "runtime"
    listed = await gateway.client.get("/admin/tenants", headers=auth(ADMIN_KEY))
    by_name = {t["name"]: t for t in (await listed.json())["tenants"]}
    assert by_name["tiny"]["source"] == "runtime" and by_name["tiny"]["priority"] == 5
    assert by_name["tenant-a"]["source"] == "config"
    assert by_name["tiny"]["remaining"]["requests"] == 0


async def test_delete_removes_the_tenant_and_refuses_its_keys(start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    await post(gateway, "/admin/tenants", {"name": "gone"})
    _, key = await post(gateway, "/admin/tenants/gone/keys", {})
    assert await chat(gateway, key["key"]) == 200
    response = await gateway.client.delete("/admin/tenants/gone", headers=auth(ADMIN_KEY))
    assert response.status == 204
    assert await chat(gateway, key["key"]) == 401
    assert (await gateway.client.delete("/admin/tenants/gone", headers=auth(ADMIN_KEY))).status == 404
    # the name can be used again, and the old key stays refused
    assert (await post(gateway, "/admin/tenants", {"name": "gone"}))[0] == 201
    assert await chat(gateway, key["key"]) == 401


async def test_config_tenants_are_409_and_an_existing_name_is_409(start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    status, body = await post(gateway, "/admin/tenants", {"name": "tenant-a"})
    assert status == 409 and "config file" in body["error"]
    for method in ("PATCH", "DELETE"):
        response = await gateway.client.request(method, "/admin/tenants/tenant-a", json={"priority": 1},
                                                headers=auth(ADMIN_KEY))
        assert response.status == 409
    assert (await post(gateway, "/admin/tenants", {"name": "dup"}))[0] == 201
    status, body = await post(gateway, "/admin/tenants", {"name": "dup"})
    assert status == 409 and body["error"] == "tenant 'dup' exists"


async def test_a_concurrent_create_of_one_name_is_one_201_and_one_409(start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    results = await asyncio.gather(*(post(gateway, "/admin/tenants", {"name": "race", "priority": i})
                                     for i in range(6)))
    assert sorted(status for status, _ in results) == [201, 409, 409, 409, 409, 409]


async def test_bad_bodies_are_400_naming_the_field_with_the_config_files_words(
        start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    cases = [
        ({"name": "x", "requests_per_minte": 5}, "requests_per_minte: unknown field"),
        ({"name": "x", "requests_per_minute": "5"}, "requests_per_minute: must be an integer (got '5')"),
        ({"name": "x", "requests_per_minute": 0}, "requests_per_minute: "),
        ({"name": "x", "budget_period": "week"}, "budget_period: "),
        ({"name": "x", "models": []}, "models: "),
        ({"name": "x", "models": ["nothing-serves-this"]}, "models: ['nothing-serves-this'] routes to no upstream"),
        ({"name": "x", "key_sha256": "0" * 64}, "key_sha256: keys are issued by"),
        ({"requests_per_minute": 5}, "name: required key is missing"),
        ({"name": "a/b"}, "name: must be 1-64 characters"),
        ([1, 2], "body: must be a JSON object"),
    ]
    for body, message in cases:
        status, answer = await post(gateway, "/admin/tenants", body)
        assert status == 400, body
        assert answer["error"].startswith(message), (body, answer)
    broken = await gateway.client.post("/admin/tenants", data=b"{", headers=auth(ADMIN_KEY))
    assert broken.status == 400
    await post(gateway, "/admin/tenants", {"name": "ok"})
    response = await gateway.client.patch("/admin/tenants/ok", json={"priority": "high"}, headers=auth(ADMIN_KEY))
    assert response.status == 400 and (await response.json())["error"].startswith("priority: must be an integer")
    response = await gateway.client.patch("/admin/tenants/ok", json={"name": "other"}, headers=auth(ADMIN_KEY))
    assert response.status == 400
    for body, message in (({"labl": "x"}, "labl: unknown field"), ({"label": 3}, "label: must be a string"),
                          ({"expires_at": "tomorrow"}, "expires_at: must be an RFC 3339 time"),
                          ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at: is in the past")):
        status, answer = await post(gateway, "/admin/tenants/ok/keys", body)
        assert status == 400 and answer["error"].startswith(message), (body, answer)


async def test_unknown_tenants_and_keys_are_404(start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    headers = auth(ADMIN_KEY)
    assert (await gateway.client.patch("/admin/tenants/nope", json={}, headers=headers)).status == 404
    assert (await gateway.client.delete("/admin/tenants/nope", headers=headers)).status == 404
    assert (await gateway.client.post("/admin/tenants/nope/keys", json={}, headers=headers)).status == 404
    assert (await gateway.client.get("/admin/tenants/nope/keys", headers=headers)).status == 404
    assert (await gateway.client.delete("/admin/keys/key_0000", headers=headers)).status == 404


async def test_admin_key_rules_hold_on_the_new_routes(start_gateway: GatewayFactory) -> None:
    plain = await start_gateway()
    gateway = await admin_gateway(start_gateway)
    routes = [("POST", "/admin/tenants"), ("PATCH", "/admin/tenants/x"), ("DELETE", "/admin/tenants/x"),
              ("POST", "/admin/tenants/x/keys"), ("GET", "/admin/tenants/x/keys"),
              ("DELETE", "/admin/keys/x"), ("GET", "/admin/spend"), ("GET", "/admin/upstreams")]
    for method, path in routes:
        assert (await plain.client.request(method, path, headers=auth(ADMIN_KEY))).status == 404, path
        for headers in ({}, auth("wrong"), auth(CLIENT_KEY)):
            assert (await gateway.client.request(method, path, headers=headers)).status == 401, path
    assert (await plain.client.get("/admin/")).status == 404
    # the page itself holds no data: it is served without a key, which it asks the operator for
    page = await gateway.client.get("/admin/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


async def test_a_key_issued_to_a_config_tenant_serves_it_and_an_expired_key_is_401(
        start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    soon = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, key = await post(gateway, "/admin/tenants/tenant-a/keys", {"expires_at": soon})
    assert status == 201 and key["expires_at"] == soon
    assert await chat(gateway, key["key"]) == 200
    assert gateway.request_logs()[-1]["tenant"] == "tenant-a"
    # the expiry is checked at each request: refused once it has passed
    assert await eventually(lambda: _refused(gateway, key["key"]), timeout=5, interval=0.1)


async def _refused(gateway: Gateway, key: str) -> bool:
    return await chat(gateway, key) == 401


async def test_a_stream_in_flight_finishes_when_its_key_is_revoked(start_gateway: GatewayFactory) -> None:
    gateway = await admin_gateway(start_gateway)
    await post(gateway, "/admin/tenants", {"name": "streamer"})
    _, key = await post(gateway, "/admin/tenants/streamer/keys", {})
    # paced: ten words at five a second, so the stream is still going when the key is revoked
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("mock-1+tps=5,words=10"),
                                         headers=auth(key["key"]))
    assert response.status == 200
    first = await response.content.readline()
    assert first.startswith(b"data: ")
    revoked = await gateway.client.delete(f"/admin/keys/{key['id']}", headers=auth(ADMIN_KEY))
    assert revoked.status == 204
    assert await chat(gateway, key["key"]) == 401  # new requests: refused at once
    rest = await response.content.read()
    assert rest.rstrip().endswith(b"data: [DONE]")  # the stream in flight: finished as it started
    assert b"error" not in rest
