"""Black-box review of the admin API's bodies, through real sockets: JSON is read as strictly
as on the API routes (a duplicate key was accepted with the last value kept, so
`{"name": "a", "name": "b"}` created `b`); a 400 names the problem."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import hash_key
from gateway.state import STORE
from tests.conftest import Gateway, GatewayFactory

ADMIN_KEY = "qa-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}


@pytest.fixture
async def admin(start_gateway: GatewayFactory, tmp_path: Any) -> Gateway:
    return await start_gateway(server={"admin_key_sha256": hash_key(ADMIN_KEY)},
                               store={"path": str(tmp_path / "state.db")})


@pytest.mark.parametrize(("method", "path", "body", "names"), [
    ("POST", "/admin/tenants", b'{"name":"qa-a","name":"qa-b"}', "name"),
    ("POST", "/admin/tenants", b'{"name":"qa-c","priority":1,"priority":2}', "priority"),
    ("PATCH", "/admin/tenants/qa-d", b'{"priority":1,"priority":2}', "priority"),
    ("POST", "/admin/tenants/qa-d/keys", b'{"label":"x","label":"y"}', "label"),
])
async def test_a_duplicate_key_in_an_admin_body_is_a_400_naming_it(
        admin: Gateway, method: str, path: str, body: bytes, names: str) -> None:
    created = await admin.client.post("/admin/tenants", json={"name": "qa-d"}, headers=ADMIN)
    assert created.status == 201
    response = await admin.client.request(method, path, data=body, headers=ADMIN)
    answer = await response.json()
    assert response.status == 400, answer
    assert "duplicate key" in answer["error"] and names in answer["error"]
    listed = await admin.client.get("/admin/tenants", headers=ADMIN)
    names_now = {t["name"] for t in (await listed.json())["tenants"]}
    assert not names_now & {"qa-a", "qa-b", "qa-c"}
    keys = await admin.client.get("/admin/tenants/qa-d/keys", headers=ADMIN)
    assert (await keys.json())["data"] == []


async def test_malformed_admin_json_is_still_a_400(admin: Gateway) -> None:
    for body in (b"{bad", b"[1,", b'{"name": NaN}'):
        response = await admin.client.post("/admin/tenants", data=body, headers=ADMIN)
        assert response.status == 400
        assert (await response.json())["error"].startswith("body: not valid JSON")


@pytest.mark.parametrize("expires", ["9999-12-31T23:59:59-14:00", "9999-12-31T23:00:00-01:00"])
async def test_an_expiry_past_the_year_9999_in_utc_is_a_400_and_the_list_still_reads(
        admin: Gateway, expires: str) -> None:
    # It was stored, answered 500, and every later list of the tenant's keys was a 500 too.
    assert (await admin.client.post("/admin/tenants", json={"name": "qa-e"}, headers=ADMIN)).status == 201
    response = await admin.client.post("/admin/tenants/qa-e/keys", json={"expires_at": expires}, headers=ADMIN)
    answer = await response.json()
    assert response.status == 400, answer
    assert answer["error"].startswith("expires_at:")
    last = await admin.client.post("/admin/tenants/qa-e/keys", json={"expires_at": "9999-12-31T23:59:59Z"},
                                   headers=ADMIN)
    assert last.status == 201
    listed = await admin.client.get("/admin/tenants/qa-e/keys", headers=ADMIN)
    assert listed.status == 200
    assert [k["expires_at"] for k in (await listed.json())["data"]] == ["9999-12-31T23:59:59Z"]


@pytest.mark.parametrize(("field", "value"), [
    ("requests_per_minute", 2**80), ("tokens_per_minute", 2**64), ("priority", 2**63), ("priority", -(2**70)),
])
async def test_an_integer_past_64_bits_in_a_tenant_is_a_400_naming_it(
        admin: Gateway, field: str, value: int) -> None:
    # It was a 500 (text/plain): the answer's JSON encoder refuses integers past 64 bits.
    response = await admin.client.post("/admin/tenants", json={"name": "qa-big", field: value}, headers=ADMIN)
    answer = await response.json()
    assert response.status == 400, answer
    assert answer["error"].startswith(f"{field}:")
    assert (await admin.client.post("/admin/tenants", json={"name": "qa-big", field: 2**63 - 1 if field != "priority"
                                                            else -(2**63)}, headers=ADMIN)).status == 201
    assert (await admin.client.get("/admin/tenants", headers=ADMIN)).status == 200


async def test_a_bug_in_an_admin_route_is_a_json_500_and_one_logged_traceback(
        admin: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both 500s this review found on the admin routes came back as aiohttp's text/plain page
    # with no traceback in the log: an admin answer is JSON like every other, and a bug is
    # logged as on the API routes (its type and frames, never its text: it may hold a key).
    store = admin.client.app[STORE].store

    secret = "gk-" + "secret-in-the-message"

    async def broken(tenant: str) -> list[Any]:
        raise ValueError(f"boom: {secret}")

    monkeypatch.setattr(store, "keys_of", broken)
    assert (await admin.client.post("/admin/tenants", json={"name": "qa-f"}, headers=ADMIN)).status == 201
    response = await admin.client.get("/admin/tenants/qa-f/keys", headers=ADMIN)
    assert response.status == 500
    assert await response.json() == {"error": "internal error"}
    assert response.headers["x-request-id"]
    bugs = [line for line in admin.log_lines() if line.get("event") == "unhandled"]
    assert len(bugs) == 1 and bugs[0]["exception"] == "ValueError" and "keys_of" in bugs[0]["traceback"]
    assert "gk-secret" not in admin.log.getvalue()
    audit = [line for line in admin.log_lines() if line.get("event") == "admin"]
    assert audit[-1]["status"] == 500
