"""Resumable streams through HTTP on real sockets (the memory backend): create, subscribe,
resume after Last-Event-ID, cancel, abandon, the GET form of /api/chat/stream, records and
metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from gateway.mock.shapes import answer_words
from tests._proc import eventually
from tests.conftest import CLIENT_KEY_B, Gateway, GatewayFactory, auth, chat_body

PRICES = {"mock-*": {"input": 1.0, "output": 2.0}}


def parse(raw: bytes) -> list[tuple[str | None, str, Any]]:
    """(id, event name, data) of each event with data (as a browser reads them)."""
    out = []
    for block in raw.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            out.append((fields.get("id"), fields.get("event", "message"), orjson.loads(fields["data"])))
    return out


def text_of(events: list[tuple[str | None, str, Any]]) -> str:
    return "".join(data["content"] for _, name, data in events if name == "message")


async def create(gateway: Gateway, body: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await gateway.client.post("/api/chat/streams", json=body or chat_body(),
                                         headers=headers or auth())
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def read_all(gateway: Gateway, url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    response = await gateway.client.get(url, headers=headers or {})
    return response.status, await response.read()


def generations(gateway: Gateway) -> list[dict[str, Any]]:
    return [line for line in gateway.log_lines() if line.get("event") == "generation"]


async def test_create_then_subscribe_gets_every_event_with_ids(gateway: Gateway) -> None:
    created = await create(gateway, chat_body(content="say it"))
    assert len(created["id"]) >= 32 and created["url"] == f"/api/chat/streams/{created['id']}"
    assert created["expires_at"].endswith("Z")
    status, raw = await read_all(gateway, created["url"])
    assert status == 200
    assert raw.startswith(b"retry: ") and raw.count(b"retry: ") == 1
    events = parse(raw)
    assert [e[0] for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert events[-1][1:] == ("done", {}) and text_of(events).split() == answer_words("say it", 12)


async def test_ids_are_unguessable_and_distinct(gateway: Gateway) -> None:
    ids = {(await create(gateway))["id"] for _ in range(3)}
    assert len(ids) == 3 and all(len(i) >= 32 for i in ids)  # token_urlsafe(24): 192 bits


async def test_last_event_id_header_or_query_resumes_after_that_event(gateway: Gateway) -> None:
    created = await create(gateway)
    _, raw = await read_all(gateway, created["url"])
    whole = parse(raw)
    _, after_3 = await read_all(gateway, created["url"], {"Last-Event-ID": "3"})
    assert parse(after_3) == whole[3:]
    _, after_5 = await read_all(gateway, created["url"] + "?lastEventId=5")
    assert parse(after_5) == whole[5:]
    assert await gateway.metric("gateway_stream_resumes_total", result="replayed") == 2


async def test_a_resume_after_the_end_is_204_so_eventsource_stops(gateway: Gateway) -> None:
    created = await create(gateway)
    _, raw = await read_all(gateway, created["url"])
    last = parse(raw)[-1][0]
    status, _ = await read_all(gateway, created["url"], {"Last-Event-ID": str(last)})
    assert status == 204


async def test_unknown_or_malformed_ids_are_404_in_the_simple_shape(gateway: Gateway) -> None:
    for url in ("/api/chat/streams/" + "x" * 32, "/api/chat/streams/short"):
        response = await gateway.client.get(url, headers={"Last-Event-ID": "2"})
        assert response.status == 404
        assert parse(await response.read()) == [(None, "error", {"code": 404, "message": pytest.approx(
            "no such stream (unknown, expired, or not this key's)")})]
    assert await gateway.metric("gateway_stream_resumes_total", result="unknown") == 2


async def test_several_subscribers_watch_one_live_stream(gateway: Gateway) -> None:
    created = await create(gateway, chat_body("mock-1+tps=50"))
    results = await asyncio.gather(*(read_all(gateway, created["url"]) for _ in range(3)))
    first = parse(results[0][1])
    assert first[-1][1] == "done" and all(parse(raw) == first for _, raw in results)
    (line,) = await eventually(lambda: generations(gateway), what="the generation's line")
    assert line["subscribers"] == 3 and line["resumes"] == 0


async def test_the_generation_runs_with_nobody_watching_and_is_told_once(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(prices=PRICES)
    created = await create(gateway, chat_body(content="alone"))
    (line,) = await eventually(lambda: generations(gateway), what="the generation's line")
    assert line["outcome"] == "ok" and line["completion_tokens"] == 12 and line["cost_usd"] > 0
    assert line["subscribers"] == 0 and created["id"] not in json.dumps(line)  # never the whole id
    _, raw = await read_all(gateway, created["url"])  # kept: replayed whole
    assert text_of(parse(raw)).split() == answer_words("alone", 12)
    posts = [r for r in gateway.request_logs() if r["route"] == "chat_streams"]
    assert [(r["status"], r["completion_tokens"], r["cost_usd"]) for r in posts] == [(201, 0, None)]
    assert await gateway.metric("gateway_cost_usd_total", tenant="tenant-a") == pytest.approx(line["cost_usd"])
    assert await gateway.metric("gateway_tokens_total", tenant="tenant-a", kind="completion") == 12


async def test_delete_by_its_tenant_cancels_and_charges_what_arrived(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(prices=PRICES)
    created = await create(gateway, chat_body("mock-1+tps=20,words=400"))
    response = await gateway.client.get(created["url"])
    first = await response.content.readuntil(b"\n\n") + await response.content.readuntil(b"\n\n")
    assert b"event: message" in first
    other = await gateway.client.delete(created["url"], headers=auth(CLIENT_KEY_B))
    assert other.status == 404
    assert (await gateway.client.delete(created["url"])).status == 401
    mine = await gateway.client.delete(created["url"], headers=auth())
    assert mine.status == 204
    events = parse(first + await response.read())
    assert events[-1][1] == "error" and events[-1][2]["code"] == 499
    (line,) = generations(gateway)  # settled before the 204
    assert line["outcome"] == "cancelled" and 0 < line["completion_tokens"] < 400
    assert line["cost_usd"] > 0 and line["subscribers"] == 1


async def test_nobody_watching_for_abandon_seconds_cancels_it(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(streams={"abandon_seconds": 0.3})
    created = await create(gateway, chat_body("mock-1+tps=20,words=400"))
    (line,) = await eventually(lambda: generations(gateway), what="the abandoned generation's line")
    assert line["outcome"] == "cancelled" and "nobody watched" in line["error"]
    assert 0 < line["completion_tokens"] < 400
    _, raw = await read_all(gateway, created["url"])
    assert parse(raw)[-1][1] == "error"


async def test_a_watched_stream_is_not_abandoned(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(streams={"abandon_seconds": 0.3})
    created = await create(gateway, chat_body("mock-1+tps=20,words=20"))
    _, raw = await read_all(gateway, created["url"])  # about 1 s, longer than abandon_seconds
    assert parse(raw)[-1][1] == "done"


async def test_past_max_bytes_the_stream_ends_with_one_error_event(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(streams={"max_bytes": 600})
    created = await create(gateway, chat_body("mock-1+words=200"))
    _, raw = await read_all(gateway, created["url"])
    names = [name for _, name, _ in parse(raw)]
    assert names[-1] == "error" and names.count("error") == 1 and "done" not in names
    assert len(raw) < 2000
    (line,) = await eventually(lambda: generations(gateway))
    assert line["outcome"] == "stream_too_large"


async def test_no_upstream_answering_is_the_streams_error_event(gateway: Gateway) -> None:
    created = await create(gateway, chat_body("mock-1+status=400"))
    _, raw = await read_all(gateway, created["url"])
    assert [(name, data["code"]) for _, name, data in parse(raw)] == [("error", 400)]


async def test_admission_refusals_come_before_the_201(gateway: Gateway) -> None:
    assert (await gateway.client.post("/api/chat/streams", json=chat_body())).status == 401
    assert (await gateway.client.post("/api/chat/streams", json={"model": "mock-1"},
                                      headers=auth())).status == 400
    assert (await gateway.client.post("/api/chat/streams", json=chat_body("nope"),
                                      headers=auth())).status == 404


async def test_the_gauge_counts_generating_then_kept_streams(gateway: Gateway) -> None:
    created = await create(gateway, chat_body("mock-1+tps=20,words=400"))
    assert await gateway.metric("gateway_resumable_streams", state="generating") == 1
    assert (await gateway.client.delete(created["url"], headers=auth())).status == 204
    assert await gateway.metric("gateway_resumable_streams", state="generating") == 0
    assert await gateway.metric("gateway_resumable_streams", state="kept") == 1


async def test_drain_stops_a_generation_with_one_error_event(gateway: Gateway) -> None:
    from gateway.state import RUNTIME

    created = await create(gateway, chat_body("mock-1+tps=20,words=400"))
    response = await gateway.client.get(created["url"])
    await response.content.readuntil(b"event: message")
    assert gateway.client.app[RUNTIME].stop_streams("the gateway is shutting down") >= 1
    events = parse(b"event: message" + await response.read())
    assert events[-1][1] == "error" and events[-1][2]["code"] == 503
    assert [name for _, name, _ in events].count("error") == 1


# -- the GET form of /api/chat/stream -------------------------------------------------------


def get_form(messages: Any, **query: str) -> str:
    text = messages if isinstance(messages, str) else json.dumps(messages)
    extra = "".join(f"&{k}={quote(v)}" for k, v in query.items())
    return "/api/chat/stream?messages=" + quote(text) + extra


HISTORY = [{"role": "user", "content": "tell me"}]


async def test_the_get_form_streams_with_stream_ids_and_resumes_the_same_generation(gateway: Gateway) -> None:
    status, raw = await read_all(gateway, get_form(HISTORY, model="mock-1"), auth())
    assert status == 200 and raw.startswith(b"retry: ")
    events = parse(raw)
    stream_id = events[0][0].rpartition(".")[0]
    assert [e[0] for e in events] == [f"{stream_id}.{i}" for i in range(1, len(events) + 1)]
    assert text_of(events).split() == answer_words("tell me", 12) and events[-1][1] == "done"
    # the browser's reconnect: same URL, Last-Event-ID, same key: the rest, no new generation
    _, rest = await read_all(gateway, get_form(HISTORY, model="mock-1"),
                             {**auth(), "Last-Event-ID": f"{stream_id}.4"})
    assert parse(rest) == events[4:]
    lines = await eventually(lambda: generations(gateway))
    assert len(lines) == 1 and lines[0]["resumes"] == 0


async def test_the_get_form_without_a_model_uses_the_first_listed(gateway: Gateway) -> None:
    status, raw = await read_all(gateway, get_form(HISTORY), auth())
    assert status == 200 and parse(raw)[-1][1] == "done"
    (line,) = await eventually(lambda: generations(gateway))
    listed = await (await gateway.client.get("/v1/models", headers=auth())).json()
    assert line["model"] == listed["data"][0]["id"]


@pytest.mark.parametrize(("messages", "status"), [
    ("not json", 400), ("[]", 400), ('{"role": "user"}', 400), ('[{"content": "x"}]', 400),
    ('[{"role": "user", "role": "x"}]', 400)])
async def test_malformed_messages_are_400_in_the_simple_shape(gateway: Gateway, messages: str, status: int) -> None:
    response = await gateway.client.get(get_form(messages), headers=auth())
    assert response.status == status
    assert response.headers["Content-Type"].startswith("text/event-stream")
    ((_, name, data),) = parse(await response.read())
    assert name == "error" and data["code"] == status and data["message"]


async def test_the_get_form_needs_a_key_and_the_same_tenant_to_resume(gateway: Gateway) -> None:
    assert (await gateway.client.get(get_form(HISTORY))).status == 401
    _, raw = await read_all(gateway, get_form(HISTORY), auth())
    stream_id = parse(raw)[0][0].rpartition(".")[0]
    other = await gateway.client.get(get_form(HISTORY), headers={**auth(CLIENT_KEY_B),
                                                                   "Last-Event-ID": f"{stream_id}.1"})
    assert other.status == 404
    bad = await gateway.client.get(get_form(HISTORY), headers={**auth(), "Last-Event-ID": "nonsense"})
    assert bad.status == 400


async def test_a_url_over_the_body_limit_is_414_in_the_simple_shape(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"max_body_bytes": 2048})
    long = [{"role": "user", "content": "x" * 4000}]
    response = await gateway.client.get(get_form(long), headers=auth())
    assert response.status == 414
    ((_, name, data),) = parse(await response.read())
    assert name == "error" and data["code"] == 414 and "/api/chat/streams" in data["message"]


async def test_cors_for_eventsource_on_the_get_routes(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"cors_origins": ["https://app.example.com"]})
    origin = {"Origin": "https://app.example.com"}
    created = await create(gateway)
    response = await gateway.client.get(created["url"], headers=origin)
    await response.read()
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    response = await gateway.client.get(get_form(HISTORY), headers={**origin, **auth()})
    await response.read()
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    response = await gateway.client.get(created["url"], headers={"Origin": "https://evil.example"})
    await response.read()
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_budgets_and_admin_tenants_see_the_generations_cost(start_gateway: GatewayFactory) -> None:
    from gateway.auth import hash_key
    from tests.conftest import CLIENT_KEY

    admin = "gw-admin-secret"
    tenants = [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 5.0,
                "budget_period": "total"},
               {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B)}]
    gateway = await start_gateway(server={"admin_key_sha256": hash_key(admin)}, prices=PRICES,
                                  tenants=tenants)
    await create(gateway, chat_body(max_tokens=100))
    (line,) = await eventually(lambda: generations(gateway), what="the generation's line")
    answer = await (await gateway.client.get("/admin/tenants", headers=auth(admin))).json()
    budget = {t["name"]: t for t in answer["tenants"]}["tenant-a"]["budget"]
    assert line["cost_usd"] > 0 and budget["spent_usd"] == pytest.approx(line["cost_usd"])
    assert await gateway.metric("gateway_budget_remaining_usd", tenant="tenant-a") == pytest.approx(
        5.0 - line["cost_usd"])
