"""`gateway.ui`: the chat page handler and the demo key it writes into the page."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from gateway.state import DEMO_KEY as DEMO_KEY_APPKEY
from gateway.ui import SETTINGS_BLOCK, index_page, render_page, settings_json

SETTINGS = re.compile(rb'<script id="gateway-settings" type="application/json">(.*?)</script>', re.S)


def page_app(demo_key: str | None) -> web.Application:
    app = web.Application()
    if demo_key is not None:
        app[DEMO_KEY_APPKEY] = demo_key
    app.router.add_get("/", index_page)
    return app


async def test_the_demo_key_is_written_into_the_page_as_json(aiohttp_client: Any) -> None:
    client = await aiohttp_client(page_app("gw-demo-key"))
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    [block] = SETTINGS.findall(await response.read())
    assert json.loads(block) == {"demoKey": "gw-demo-key"}


async def test_without_a_demo_key_the_settings_are_empty(aiohttp_client: Any) -> None:
    client = await aiohttp_client(page_app(None))
    [block] = SETTINGS.findall(await (await client.get("/")).read())
    assert json.loads(block) == {}


def test_a_key_that_looks_like_markup_cannot_leave_its_script_element() -> None:
    key = '</script><script>alert("x")</script><!-- & \u2028'
    page = b"<p>before</p>" + SETTINGS_BLOCK + b"<p>after</p>"
    rendered = render_page(page, key)
    [block] = SETTINGS.findall(rendered)
    assert json.loads(block) == {"demoKey": key}
    assert rendered == b"<p>before</p>" + SETTINGS_BLOCK.replace(b"{}", block) + b"<p>after</p>"
    assert set(settings_json(key)) & set("<>&") == set()
