"""`GET /v1/models`: the concrete model names this tenant may use, in OpenAI's list shape,
or Anthropic's when the request carries `anthropic-version` (as the Anthropic SDK's does)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..state import LIVE, RECORD
from .stages import authenticate

#: Anthropic lists carry a creation time; the gateway knows none, so it says the epoch.
_EPOCH = "1970-01-01T00:00:00Z"


async def models(request: web.Request) -> web.StreamResponse:
    live = request.app[LIVE].current
    tenant = authenticate(request, live, request[RECORD])
    names = live.router.models_for(tenant)
    body: dict[str, Any]
    if "anthropic-version" in request.headers:
        data = [{"type": "model", "id": model, "display_name": model, "created_at": _EPOCH}
                for model, _ in names]
        body = {"data": data, "has_more": False,
                "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
    else:
        body = {"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": upstream}
            for model, upstream in names]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")
