"""`GET /admin/`: the operator's page (`static/admin.html`). The page holds no data: the
operator types the admin key, the tab keeps it (sessionStorage), and the page calls the
admin API with it. 404 like every admin route when no admin key is configured.

`GET /admin/upstreams`: what the page shows of upstream health (`health.upstream_health`)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web

from .admin import authorize
from .breaker import TargetHealth
from .health import upstream_health
from .state import LIVE

#: as the page's own meta tag, plus no framing (a page that holds the admin key)
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


async def admin_page(request: web.Request) -> web.Response:
    if not request.app[LIVE].current.config.server.admin_key_sha256:
        raise web.HTTPNotFound()
    page = resources.files("gateway").joinpath("static/admin.html").read_bytes()
    return web.Response(body=page, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": PAGE_CSP})


async def admin_bare(request: web.Request) -> web.Response:
    """`GET /admin` (typed without its slash): to the page; 404 like it when admin is off."""
    if not request.app[LIVE].current.config.server.admin_key_sha256:
        raise web.HTTPNotFound()
    raise web.HTTPPermanentRedirect("/admin/")


async def upstreams(request: web.Request) -> web.Response:
    """Each upstream: up or not, credentials refused, and each target's breaker with its last
    error (`health.upstream_health`)."""
    authorize(request)
    dialects = {u.name: u.dialect for u in request.app[LIVE].current.config.upstreams}
    return web.json_response({"data": [
        {"name": u.name, "dialect": dialects.get(u.name), "up": u.up,
         "credentials_refused": u.credentials_refused, "targets": [_target(t) for t in u.targets]}
        for u in upstream_health(request.app)]})


def _target(t: TargetHealth) -> dict[str, Any]:
    age = t.last_error_age_seconds
    return {"model": t.model, "state": str(t.state), "consecutive_failures": t.consecutive_failures,
            "last_error": t.last_error, "last_error_age_seconds": None if age is None else round(age, 3),
            "retry_in_seconds": round(t.retry_in_seconds, 3)}


PAGE_ROUTES = [web.get("/admin/", admin_page, allow_head=False),
               web.get("/admin", admin_bare, allow_head=False),
               web.get("/admin/upstreams", upstreams, allow_head=False)]
