"""Contract edges a black-box review found: what a refusal says on the APIs with no
translation, which flag a command-line error names, config values that would unbound a wait
or hide a typo, and the Responses API's own error event."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import (
    Gateway,
    auth,
)

# --- 1. a model routed only to the other dialect, on an API that does not translate ---------

ELSEWHERE = [
    ("/v1/responses", {"model": "claude-3-haiku", "input": "hi"}, "anthropic"),
    ("/v1/embeddings", {"model": "claude-3-haiku", "input": "hi"}, "anthropic"),
    ("/v1/completions", {"model": "claude-3-haiku", "prompt": "hi"}, "anthropic"),
    ("/v1/messages/count_tokens", {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
     "openai"),
]


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    """(type, message) of an error body in either dialect's shape."""
    error = body["error"]
    return error["type"], error["message"]


@pytest.mark.parametrize(("path", "body", "served_by"), ELSEWHERE)
async def test_a_model_of_the_other_dialect_is_404_saying_the_api_is_not_translated(
    gateway: Gateway, path: str, body: dict[str, Any], served_by: str,
) -> None:
    model = body["model"]
    for _ in range(2):  # the second answer comes from what the router remembered
        response = await gateway.client.post(path, json=body, headers=auth())
        assert response.status == 404
        kind, message = error_of(await response.json())
        assert kind == ("not_found_error" if path.startswith("/v1/messages") else "invalid_request_error")
        assert message == (f"model {model!r} is served only by {served_by}-dialect upstreams; "
                           f"{path} is not translated")


async def test_a_model_routed_nowhere_is_still_not_routed_to_any_upstream(gateway: Gateway) -> None:
    for path in ("/v1/responses", "/v1/chat/completions"):
        body = {"model": "nothing-like-it", "input": "hi", "messages": [{"role": "user", "content": "hi"}]}
        response = await gateway.client.post(path, json=body, headers=auth())
        assert response.status == 404
        error = (await response.json())["error"]
        assert error["code"] == "model_not_found"
        assert error["message"] == "model 'nothing-like-it' is not routed to any upstream"
