"""Helpers of the store tests: an admin key and one HTTP call to a gateway process."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from tests.conftest import auth

ADMIN_KEY = "gw-admin-store-secret"


async def call(method: str, url: str, key: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON body or text) of one request with `key` as the bearer key."""
    async with aiohttp.ClientSession() as session, session.request(
            method, url, json=body, headers={**auth(key), **(headers or {})}) as response:
        raw = await response.read()
        return response.status, (orjson.loads(raw) if raw and response.content_type == "application/json"
                                 else raw.decode())
