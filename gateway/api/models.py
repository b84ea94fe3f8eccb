"""`GET /v1/models`: the concrete model names this tenant may use, in OpenAI's list shape,
or Anthropic's when the request carries `anthropic-version` (as the Anthropic SDK's does)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..errors import ModelNotFound
from ..state import LIVE, RECORD
from .stages import authenticate

#: Anthropic lists carry a creation time; the gateway knows none, so it says the epoch.
_EPOCH = "1970-01-01T00:00:00Z"


def _entry(model: str, owner: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": model, "display_name": model, "created_at": _EPOCH}
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}


async def models(request: web.Request) -> web.StreamResponse:
    live = request.app[LIVE].current
    tenant = authenticate(request, live, request[RECORD])
    anthropic = "anthropic-version" in request.headers
    data = [_entry(model, owner, anthropic) for model, owner in live.router.models_for(tenant)]
    body: dict[str, Any]
    if anthropic:
        body = {"data": data, "has_more": False,
                "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
    else:
        body = {"object": "list", "data": data}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def model(request: web.Request) -> web.StreamResponse:
    """`GET /v1/models/{id}` (the SDKs' `models.retrieve`): one listed model, else 404."""
    live = request.app[LIVE].current
    tenant = authenticate(request, live, request[RECORD])
    wanted = request.match_info["model_id"]
    for name, owner in live.router.models_for(tenant):
        if name == wanted:
            entry = _entry(name, owner, "anthropic-version" in request.headers)
            return web.Response(body=orjson.dumps(entry), content_type="application/json")
    raise ModelNotFound(f"model {wanted[:200]!r} is not available to this key")
