"""`GET /admin/`: the operator's page (`static/admin.html`). The page holds no data: the
operator types the admin key, the tab keeps it (sessionStorage), and the page calls the
admin API with it. 404 like every admin route when no admin key is configured."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .state import LIVE


async def admin_page(request: web.Request) -> web.Response:
    if not request.app[LIVE].current.config.server.admin_key_sha256:
        raise web.HTTPNotFound()
    page = resources.files("gateway").joinpath("static/admin.html").read_bytes()
    return web.Response(body=page, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                 "script-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"})


PAGE_ROUTES = [web.get("/admin/", admin_page, allow_head=False)]
