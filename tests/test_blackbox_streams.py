"""Black-box review of the resumable-stream routes, through real sockets: what a browser app on
another origin and the origin story's `EventSource` client meet (defects found in review).

- CORS: every method a route answers passes its preflight from a `cors_origins` origin (the
  routes sharing a path, e.g. GET and DELETE `/api/chat/streams/{id}`, were separate resources,
  so only the first one's method was allowed: a browser app could not cancel its stream, and a
  `fetch`-based reader with a key could not use the GET form of `/api/chat/stream`).
- The GET form without `model` uses the first model `/v1/models` lists for the key, which
  includes the names an upstream's own list reports under a glob (not only the config's
  concrete names).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from tests._proc import eventually
from tests.conftest import Gateway, GatewayFactory, Mock, auth

ORIGIN = "https://app.example.com"
HISTORY = [{"role": "user", "content": "hello there"}]


def _preflight(method: str) -> dict[str, str]:
    return {"Origin": ORIGIN, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type,last-event-id"}


async def _create(gateway: Gateway) -> dict[str, Any]:
    response = await gateway.client.post(
        "/api/chat/streams", json={"model": "mock-1", "messages": HISTORY}, headers=auth())
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/chat/stream"), ("GET", "/api/chat/stream"), ("POST", "/api/chat/streams"),
    ("GET", "/api/chat/streams/{id}"), ("DELETE", "/api/chat/streams/{id}"),
])
async def test_every_method_of_the_stream_routes_passes_its_preflight(
        start_gateway: GatewayFactory, method: str, path: str) -> None:
    gateway = await start_gateway(server={"cors_origins": [ORIGIN]})
    created = await _create(gateway)
    response = await gateway.client.options(path.format(id=created["id"]), headers=_preflight(method))
    assert response.status == 200, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert method in response.headers["Access-Control-Allow-Methods"]


async def test_a_browser_app_on_an_allowed_origin_cancels_its_stream(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"cors_origins": [ORIGIN]})
    created = await _create(gateway)
    preflight = await gateway.client.options(created["url"], headers=_preflight("DELETE"))
    assert preflight.status == 200
    response = await gateway.client.delete(created["url"], headers={"Origin": ORIGIN, **auth()})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_a_preflight_from_another_origin_is_still_refused(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(server={"cors_origins": [ORIGIN]})
    created = await _create(gateway)
    response = await gateway.client.options(
        created["url"], headers={**_preflight("DELETE"), "Origin": "https://evil.example"})
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_the_get_form_without_a_model_uses_the_first_listed_one_under_a_glob(
        start_gateway: GatewayFactory, mock: Mock) -> None:
    # Only globs in the config: the names come from the upstream's own list (the mock's).
    upstream = {"name": "mock", "dialect": "openai", "base_url": f"{mock.url}/v1",
                "api_key_env": "MOCK_OPENAI_KEY", "models": ["mock-*"]}
    gateway = await start_gateway(upstreams=[upstream])

    async def listed() -> list[str]:
        response = await gateway.client.get("/v1/models", headers=auth())
        return [entry["id"] for entry in (await response.json())["data"]]

    names = await eventually(listed, what="the mock's own list under the glob")
    response = await gateway.client.get(
        f"/api/chat/stream?messages={quote(json.dumps(HISTORY))}", headers=auth())
    body = await response.text()
    assert response.status == 200, body
    assert "event: done" in body
    generation = [line for line in gateway.log_lines() if line.get("event") == "generation"]
    assert [line["model"] for line in generation] == [names[0]]


@pytest.mark.parametrize("body", [
    b'{"model":"mock-1","messages":[{"role":"user","content":"\\ud800"}]}',  # a lone surrogate
    b'{"model":"mock-1","messages":[{"role":"user","content":"hi"}],"seed":100000000000000000000000}',
])
async def test_a_body_the_upstream_request_cannot_carry_is_a_400_at_create(
        gateway: Gateway, body: bytes) -> None:
    # POST /api/chat/stream refuses it before the stream; the resumable form did so only
    # after its 201, as the stream's one event (and a generation admitted for nothing).
    for path in ("/api/chat/stream", "/api/chat/streams"):
        response = await gateway.client.post(
            path, data=body, headers={**auth(), "Content-Type": "application/json"})
        text = await response.text()
        assert response.status == 400, (path, text)
        assert text.startswith("event: error\n") and "cannot be sent on" in text
    assert not [line for line in gateway.log_lines() if line.get("event") == "generation"]


@pytest.mark.parametrize("seq", ["\u00b2", "\u0663", "\uff13", "-1", "1.5", "1e3"])
async def test_a_last_event_id_that_is_no_ascii_number_is_a_400_never_a_500(
        gateway: Gateway, seq: str) -> None:
    # `str.isdigit()` holds for a superscript two, which `int()` refuses: it was a 500; an
    # Arabic-Indic three was read as 3.
    created = await _create(gateway)
    form = f"/api/chat/stream?model=mock-1&messages={quote(json.dumps(HISTORY))}"
    asks = [(created["url"], {"Last-Event-ID": seq}),
            (f"{created['url']}?lastEventId={quote(seq)}", {}),
            (form, {**auth(), "Last-Event-ID": f"{created['id']}.{seq}"}),
            (f"{form}&lastEventId={quote(created['id'] + '.' + seq)}", auth())]
    for url, headers in asks:
        response = await gateway.client.get(url, headers=headers)
        text = await response.text()
        assert response.status == 400, (url, text)
        assert text.startswith("event: error\n") and "Last-Event-ID" in text
