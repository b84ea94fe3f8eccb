"""`GET /v1/models`: the concrete model names this tenant may use (the config's, and what the
providers list under an upstream's glob, see `gateway.models`), in OpenAI's list shape, or
Anthropic's when the request carries `anthropic-version` (as the Anthropic SDK's does)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..config import Tenant
from ..errors import ModelNotFound
from ..live import Snapshot
from ..models import is_glob
from ..state import LIVE, MODEL_LISTS, RECORD
from .stages import authenticate

#: Anthropic lists carry a creation time; the gateway knows none, so it says the epoch.
_EPOCH = "1970-01-01T00:00:00Z"


def _entry(model: str, owner: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": model, "display_name": model, "created_at": _EPOCH}
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}


def _listed(request: web.Request, snapshot: Snapshot, tenant: Tenant) -> list[tuple[str, str]]:
    """(model, owner), sorted: the config's concrete names, and the names each upstream with a
    glob reported in its own list that match the glob (from memory: never an upstream call)."""
    seen = dict(snapshot.router.models_for(tenant))
    for name, upstream in request.app[MODEL_LISTS].matching(snapshot.config):
        if tenant.allows(name):
            seen.setdefault(name, upstream)
    return sorted(seen.items())


async def models(request: web.Request) -> web.StreamResponse:
    snapshot = request.app[LIVE].current
    tenant = authenticate(request, snapshot, request[RECORD])
    anthropic = "anthropic-version" in request.headers
    data = [_entry(model, owner, anthropic) for model, owner in _listed(request, snapshot, tenant)]
    body: dict[str, Any]
    if anthropic:
        body = {"data": data, "has_more": False,
                "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
    else:
        body = {"object": "list", "data": data}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def model(request: web.Request) -> web.StreamResponse:
    """`GET /v1/models/{id}` (the SDKs' `models.retrieve`): 200 for any name this tenant can
    route, listed or not (`gpt-4o` under a `gpt-*` glob); else 404. A glob is never a model."""
    snapshot = request.app[LIVE].current
    tenant = authenticate(request, snapshot, request[RECORD])
    wanted = request.match_info["model_id"]
    if is_glob(wanted):
        raise ModelNotFound(f"model {wanted[:200]!r} is not available to this key")
    owner = dict(_listed(request, snapshot, tenant)).get(wanted)
    if owner is None:
        plan = snapshot.router.route(tenant, wanted)  # ModelNotFound when it does not route
        owner = plan.targets[0].upstream.name
    entry = _entry(wanted, owner, "anthropic-version" in request.headers)
    return web.Response(body=orjson.dumps(entry), content_type="application/json")
