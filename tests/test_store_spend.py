"""Spend per day over HTTP (in-process gateway, SQLite store in memory): rows per tenant, key,
model and tag, as JSON and CSV, grouped or not; `x-gateway-tags` checked (a 400 in the
route's shape), in the log line and never in a metric label; and the rows agree with the
budget counters and the token metrics over a run."""

from __future__ import annotations

import csv
import io
from typing import Any

from gateway.auth import hash_key
from tests._metrics import metric_value
from tests._proc import eventually
from tests.conftest import CLIENT_KEY, CLIENT_KEY_B, Gateway, GatewayFactory, auth, chat_body

ADMIN_KEY = "gw-admin-spend-secret"
PRICES = {"mock-*": {"input": 1.5, "output": 3.25}, "claude-*": {"input": 0.8, "output": 4.0}}


async def spend_gateway(start_gateway: GatewayFactory) -> Gateway:
    return await start_gateway(
        server={"admin_key_sha256": hash_key(ADMIN_KEY)}, prices=PRICES,
        tenants=[{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 100.0,
                  "budget_period": "total"},
                 {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B)}])


async def chat(gateway: Gateway, key: str = CLIENT_KEY, tags: str | None = None, *, stream: bool = False,
               model: str = "mock-1", content: str = "hello there") -> int:
    headers = auth(key) if tags is None else {**auth(key), "x-gateway-tags": tags}
    response = await gateway.client.post("/v1/chat/completions", headers=headers,
                                         json=chat_body(model, stream=stream, content=content))
    await response.read()
    return response.status


async def spend(gateway: Gateway, query: str = "") -> Any:
    response = await gateway.client.get(f"/admin/spend{query}", headers=auth(ADMIN_KEY))
    assert response.status == 200, await response.text()
    return await response.json() if "format=csv" not in query else await response.text()


async def rows_for(gateway: Gateway, requests: int, query: str = "") -> list[dict[str, Any]]:
    """The rows once `requests` requests are in them (rows are written about a second late)."""

    async def written() -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = (await spend(gateway, query))["data"]
        return data if sum(r["requests"] for r in data) >= requests else []

    return await eventually(written, timeout=5, interval=0.1, what=f"{requests} requests in the spend rows")


async def test_spend_by_tag_is_right_in_json_and_csv(start_gateway: GatewayFactory) -> None:
    gateway = await spend_gateway(start_gateway)
    for tags in ("search", "search", "search,batch", "batch", None):
        assert await chat(gateway, tags=tags) == 200
    assert await chat(gateway, CLIENT_KEY_B, tags="search", stream=True) == 200
    lines = gateway.request_logs()
    assert [line.get("tags") for line in lines] == [["search"], ["search"], ["search", "batch"], ["batch"],
                                                    None, ["search"]]
    costs = [line["cost_usd"] for line in lines]
    by_tag = {r["tag"]: r for r in await rows_for(gateway, 7, "?group_by=tag")}
    # a request with two tags counts under each; one with none under ""
    assert set(by_tag) == {"search", "batch", ""}
    assert by_tag["search"]["requests"] == 4 and by_tag["batch"]["requests"] == 2
    assert by_tag[""]["requests"] == 1
    assert by_tag["search"]["cost_usd"] == round(costs[0] + costs[1] + costs[2] + costs[5], 6)
    assert by_tag["batch"]["cost_usd"] == round(costs[2] + costs[3], 6)
    assert by_tag["search"]["prompt_tokens"] == sum(lines[i]["prompt_tokens"] for i in (0, 1, 2, 5))
    assert set(by_tag["search"]) == {"day", "tag", "requests", "prompt_tokens", "completion_tokens", "cost_usd"}
    text = await spend(gateway, "?group_by=tag&format=csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "day,tag,requests,prompt_tokens,completion_tokens,cost_usd"
    assert {r["tag"]: (int(r["requests"]), float(r["cost_usd"])) for r in parsed} == {
        t: (r["requests"], r["cost_usd"]) for t, r in by_tag.items()}
    # ungrouped: every field, the tags of a request as one value
    rows = (await spend(gateway))["data"]
    assert {(r["tenant"], r["tag"]) for r in rows} == {("tenant-a", "search"), ("tenant-a", "batch,search"),
                                                       ("tenant-a", "batch"), ("tenant-a", ""),
                                                       ("tenant-b", "search")}
    assert all(r["key_id"] == f"config:{hash_key(CLIENT_KEY)[:8]}" for r in rows if r["tenant"] == "tenant-a")
    assert list(rows[0]) == ["day", "tenant", "key_id", "model", "tag", "requests", "prompt_tokens",
                             "completion_tokens", "cost_usd"]
    response = await gateway.client.get("/admin/spend?format=csv", headers=auth(ADMIN_KEY))
    assert response.content_type == "text/csv"
    assert (await response.text()).splitlines()[0] == ",".join(rows[0])
    # tags never become metric labels
    assert "search" not in await gateway.metrics()


async def test_spend_rows_agree_with_the_budget_counters_and_token_metrics(
        start_gateway: GatewayFactory) -> None:
    gateway = await spend_gateway(start_gateway)
    headers = auth(ADMIN_KEY)
    response = await gateway.client.post("/admin/tenants", json={"name": "rt", "budget_usd": 50.0,
                                                                "budget_period": "total"}, headers=headers)
    assert response.status == 201
    response = await gateway.client.post("/admin/tenants/rt/keys", json={}, headers=headers)
    runtime_key = (await response.json())["key"]
    sent = 0
    for i in range(12):
        key = runtime_key if i % 3 == 0 else CLIENT_KEY
        model = "claude-3-haiku" if i % 4 == 1 else "mock-1"
        assert await chat(gateway, key, tags=f"t{i % 2}", stream=i % 2 == 0, model=model,
                          content="word " * (i * 7 + 1)) == 200
        sent += 1
    assert await chat(gateway, "wrong-key") == 401  # refused: no row
    by_tenant = {r["tenant"]: r for r in await rows_for(gateway, sent, "?group_by=tenant")}
    tenants = {t["name"]: t for t in (await (await gateway.client.get("/admin/tenants", headers=headers)).json())["tenants"]}
    for name in ("tenant-a", "rt"):
        assert by_tenant[name]["cost_usd"] > 0
        assert by_tenant[name]["cost_usd"] == tenants[name]["budget"]["spent_usd"], name
    metrics = await gateway.metrics()
    a = by_tenant["tenant-a"]
    assert a["prompt_tokens"] == metric_value(metrics, "gateway_tokens_total", tenant="tenant-a", kind="prompt")
    assert a["completion_tokens"] == metric_value(metrics, "gateway_tokens_total", tenant="tenant-a",
                                                  kind="completion")
    assert round(a["cost_usd"], 6) == round(metric_value(metrics, "gateway_cost_usd_total", tenant="tenant-a"), 6)
    by_model = {r["model"]: r["requests"] for r in (await spend(gateway, "?group_by=model"))["data"]}
    assert by_model == {"mock-1": 9, "claude-3-haiku": 3}
    by_key = {r["key_id"]: r["requests"] for r in (await spend(gateway, "?group_by=key"))["data"]}
    assert sorted(by_key.values()) == [4, 8] and len(by_key) == 2


async def test_bad_tags_are_400_in_the_routes_shape(start_gateway: GatewayFactory) -> None:
    gateway = await spend_gateway(start_gateway)
    bad = ["a,b,c,d,e", "x" * 65, "no spaces", "", "ok,", "caf\u00e9"]
    for tags in bad:
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False),
                                             headers={**auth(), "x-gateway-tags": tags.encode().decode("latin-1")})
        if tags == "":  # an empty header is no tags
            assert response.status == 200
            continue
        assert response.status == 400, tags
        body = await response.json()
        assert body["error"]["message"].startswith("x-gateway-tags: "), body
    response = await gateway.client.post(
        "/v1/messages", headers={**auth(), "x-gateway-tags": "a b", "anthropic-version": "2023-06-01"},
        json={"model": "claude-3-haiku", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status == 400
    body = await response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert await chat(gateway, tags="a,a,b,c,d") == 200  # repeats count once: 4 tags
    assert gateway.request_logs()[-1]["tags"] == ["a", "b", "c", "d"]


async def test_spend_query_parameters_are_checked(start_gateway: GatewayFactory) -> None:
    gateway = await spend_gateway(start_gateway)
    for query, message in (("?from=2026-13-01", "from: must be a day"), ("?to=yesterday", "to: must be a day"),
                           ("?from=2026-02-01&to=2026-01-01", "from: is after to"),
                           ("?from=2020-01-01&to=2026-01-01", "from: at most 366 days"),
                           ("?group_by=user", "group_by: must be one of tenant, key, model, tag"),
                           ("?format=xml", "format: must be json or csv"), ("?tenant=a", "tenant: unknown parameter")):
        response = await gateway.client.get(f"/admin/spend{query}", headers=auth(ADMIN_KEY))
        assert response.status == 400, query
        assert (await response.json())["error"].startswith(message), query
    assert (await spend(gateway, "?from=2026-01-01&to=2026-01-31"))["data"] == []
