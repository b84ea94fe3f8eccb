"""The admin routes: `GET /admin/tenants` (limits, what remains, spend this period, streams)
and `POST /admin/reload`. Not API routes: no request record, their own bearer key.

The key is checked against the LIVE config's `server.admin_key_sha256` (so a reload can rotate
it); with no admin key configured every admin path is a 404, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from .admission.budget import period_reset, utcnow
from .admission.limiter import TenantLimits
from .auth import presented_key
from .config import Tenant
from .errors import Shed
from .reload import reload_everywhere
from .state import GATE, LIVE, STORE


def authorize(request: web.Request) -> None:
    stored = request.app[LIVE].current.config.server.admin_key_sha256
    if not stored:
        raise web.HTTPNotFound()
    key = presented_key(request)
    digest = hashlib.sha256((key or "").encode("utf-8", "surrogateescape")).digest()
    # Constant time, and a tenant key is just another wrong key here.
    if not key or not hmac.compare_digest(digest, bytes.fromhex(stored)):
        raise web.HTTPUnauthorized(
            text='{"error": "admin key required: Authorization: Bearer <admin key>"}',
            content_type="application/json", headers={"WWW-Authenticate": "Bearer"})


async def tenants(request: web.Request) -> web.Response:
    authorize(request)
    config = request.app[LIVE].current.config
    listed = [(t, "config") for t in config.tenants]
    if (store := request.app.get(STORE)) is not None:  # runtime ones: those the file doesn't shadow
        names = {t.name for t in config.tenants}
        listed += [(t, "runtime") for t in store.view.tenants.values() if t.name not in names]
    return web.json_response({"tenants": [{**await _tenant(request, t), "source": source}
                                          for t, source in listed]})


async def _tenant(request: web.Request, tenant: Tenant) -> dict[str, Any]:
    gate = request.app[GATE]
    limits = TenantLimits(tenant.name, tenant.requests_per_minute, tenant.tokens_per_minute)
    quota = await gate.limiter.peek(limits)
    remaining = None if quota is None else {
        "requests": quota.remaining_requests, "tokens": quota.remaining_tokens,
        "requests_full_in_seconds": round(quota.reset_requests, 3),
        "tokens_full_in_seconds": round(quota.reset_tokens, 3),
    }
    budget: dict[str, Any] | None = None
    if tenant.budget_usd is not None:
        budget = {"budget_usd": tenant.budget_usd, "period": tenant.budget_period,
                  "spent_usd": None, "remaining_usd": None, "resets_at": None}
        reset = period_reset(tenant.budget_period, utcnow())
        if reset is not None:
            budget["resets_at"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
        if gate.budget is not None:
            try:
                budget["spent_usd"] = await gate.budget.spent(tenant.name, tenant.budget_period)
                budget["remaining_usd"] = await gate.budget.remaining(
                    tenant.name, tenant.budget_usd, tenant.budget_period)
            except Shed:  # the shared backend is down: no honest number
                pass
    return {
        "name": tenant.name,
        "priority": tenant.priority,
        "models": list(tenant.models),
        "limits": {"requests_per_minute": tenant.requests_per_minute,
                   "tokens_per_minute": tenant.tokens_per_minute},
        "remaining": remaining,
        "budget": budget,
        "active_streams": gate.holding_by_tenant().get(tenant.name, 0),  # every worker's
    }


async def reload(request: web.Request) -> web.Response:
    """200 when the new config took effect, 400 with the one-line problem when it did not."""
    authorize(request)
    problem = reload_everywhere(request.app)
    if problem is not None:
        return web.json_response({"status": "failed", "error": problem}, status=400)
    return web.json_response({"status": "reloaded"})


ADMIN_ROUTES = [web.get("/admin/tenants", tenants, allow_head=False), web.post("/admin/reload", reload)]
