"""Black-box review: a request the router refuses (unknown path, wrong method) under `/api/`
answers in the simple events' shape, as every other error of those routes does (it was
OpenAI's JSON on `/api/chat/streams/{id}` and unknown `/api/` paths), through real sockets."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway, auth


@pytest.mark.parametrize(("method", "path", "status"), [
    ("PUT", "/api/chat/streams/abc", 405),
    ("POST", "/api/chat/streams/abc", 405),
    ("PATCH", "/api/chat/streams", 405),
    ("GET", "/api/chat/nope", 404),
])
async def test_a_router_refusal_under_api_is_in_the_simple_shape(
        gateway: Gateway, method: str, path: str, status: int) -> None:
    response = await gateway.client.request(method, path, headers=auth())
    assert response.status == status
    assert response.content_type == "text/event-stream"
    text = await response.text()
    assert text.startswith("event: error\ndata: {") and f'"code":{status}' in text, text


async def test_the_openai_paths_keep_their_shape(gateway: Gateway) -> None:
    response = await gateway.client.put("/v1/models/abc", headers=auth())
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "http_error"
