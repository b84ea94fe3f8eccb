"""`GET /admin/`: the operator's page (`static/admin.html`). The page holds no data: the
operator types the admin key, the tab keeps it (sessionStorage), and the page calls the
admin API with it. 404 like every admin route when no admin key is configured.

`GET /admin/upstreams`: what the page shows of upstream health (see `health.py`)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .admin import authorize
from .health import HEALTH, breaker_states
from .state import BREAKERS, LIVE

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


async def upstreams(request: web.Request) -> web.Response:
    authorize(request)
    health = request.app.get(HEALTH)
    config = request.app[LIVE].current.config
    states = breaker_states(request.app) if BREAKERS in request.app else {}
    data = []
    for upstream in config.upstreams:
        last = health.last.get(upstream.name) if health is not None else None
        data.append({"name": upstream.name, "dialect": upstream.dialect, **states.get(upstream.name, {}),
                     "last_error": last.public() if last is not None else None})
    return web.json_response({"data": data})



PAGE_ROUTES = [web.get("/admin/", admin_page, allow_head=False),
               web.get("/admin/upstreams", upstreams, allow_head=False)]
