"""The demo chat page at `/`: `static/index.html`, with the demo key written into it when the
app holds one (`--demo`), so a fresh visitor can chat without typing a key."""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from .state import DEMO_KEY

#: The page's empty settings block; the handler replaces it with the page's settings. The block
#: is `type="application/json"`, so the browser never runs it and the page reads it with
#: JSON.parse: no value is ever spliced into script code.
SETTINGS_BLOCK = b'<script id="gateway-settings" type="application/json">{}</script>'


def settings_json(demo_key: str | None) -> str:
    """The settings as JSON that is safe inside a `<script>` element: `<`, `>` and `&` are
    written as \\u escapes, so no value can close the element (`</script>`) or open a
    comment (`<!--`) whatever it contains; JSON.parse reads the escapes back unchanged."""
    settings = {} if demo_key is None else {"demoKey": demo_key}
    text = json.dumps(settings, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(page: bytes, demo_key: str | None) -> bytes:
    if SETTINGS_BLOCK not in page:
        raise ValueError("static/index.html lost its gateway-settings block")
    block = SETTINGS_BLOCK.replace(b"{}", settings_json(demo_key).encode("ascii"))
    return page.replace(SETTINGS_BLOCK, block, 1)


async def index_page(request: web.Request) -> web.Response:
    page = resources.files("gateway").joinpath("static/index.html").read_bytes()
    body = render_page(page, request.app.get(DEMO_KEY))
    # no-store: the page may carry a key, and a cached copy would outlive the demo.
    return web.Response(body=body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
