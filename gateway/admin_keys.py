"""The admin routes of runtime tenants and keys (see DESIGN.md, Keys and spend at runtime):

- `POST /admin/tenants` 201, `PATCH /admin/tenants/{name}` 200 (the tenant plus `source`),
  `DELETE /admin/tenants/{name}` 204 (its keys are revoked with it);
- `POST /admin/tenants/{name}/keys` 201 (the key, shown this once; only its sha256 is kept),
  `GET /admin/tenants/{name}/keys`, `DELETE /admin/keys/{id}` 204.

The admin key as for every admin route (`admin.authorize`). A config-file tenant can't be
changed here (409), but keys may be issued to it. Every change is written to the store, then
this process's view is read again before the answer: the next request here sees it, and
other workers and replicas within a second (`store/runtime.py`).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from .admin import authorize
from .admin_page import PAGE_ROUTES
from .admin_spend import SPEND_ROUTES
from .auth import hash_key
from .body import parse_json
from .errors import BadRequest
from .state import LIVE, LOGGER, METRICS, STORE
from .store.base import KeyRow, NotFound, StoreUnavailable, TenantExists, TenantRow
from .store.runtime import StoreState, refresh
from .store.tenants import Invalid, checked_fields, public

KEY_BODY = {"label": str, "expires_at": str}
MAX_LABEL = 128


def problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _state(request: web.Request) -> StoreState:
    authorize(request)
    state = request.app.get(STORE)
    if state is None:  # only when the admin key was set by a reload after the start
        raise web.HTTPServiceUnavailable(text=orjson.dumps(
            {"error": "the store opens at start when server.admin_key_sha256 is set: restart"}).decode(),
            content_type="application/json")
    return state


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:  # as strict as the API routes: a duplicate key is refused, not the last one kept
        return parse_json(raw)
    except BadRequest as exc:
        raise Invalid(f"body: not valid JSON ({exc.message.removeprefix('body ')})") from None


async def _changed(request: web.Request, state: StoreState) -> None:
    """This process's view follows its own write before the answer goes out."""
    try:
        await refresh(state, request.app[LOGGER], request.app[METRICS])
    except StoreUnavailable:  # written; the watcher reads it once the store answers again
        pass


def _is_config_tenant(request: web.Request, name: str) -> bool:
    return any(t.name == name for t in request.app[LIVE].current.config.tenants)


async def create_tenant(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    try:
        name, fields = checked_fields(await _body(request), request.app[LIVE].current.config)
    except Invalid as exc:
        return problem(400, str(exc))
    if _is_config_tenant(request, name):
        return problem(409, f"tenant {name!r} is defined in the config file")
    try:
        await state.store.create_tenant(TenantRow(name, fields, time.time()))
    except TenantExists:
        return problem(409, f"tenant {name!r} exists")
    except StoreUnavailable as exc:
        return _unavailable(request, exc)
    await _changed(request, state)
    return web.json_response(public(name, fields, "runtime"), status=201)


async def change_tenant(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    name = request.match_info["name"]
    if _is_config_tenant(request, name):
        return problem(409, f"tenant {name!r} is defined in the config file: change it there")
    try:  # the latest fields (another replica may have changed them within the second)
        await refresh(state, request.app[LOGGER], request.app[METRICS])
    except StoreUnavailable as exc:
        return _unavailable(request, exc)
    row = state.view.rows.get(name)
    if row is None:
        return problem(404, f"no runtime tenant {name!r}")
    try:
        _, fields = checked_fields(await _body(request), request.app[LIVE].current.config,
                                   current=row.fields, name=name)
        updated = await state.store.update_tenant(name, fields)
    except Invalid as exc:
        return problem(400, str(exc))
    except NotFound:
        return problem(404, f"no runtime tenant {name!r}")
    except StoreUnavailable as exc:
        return _unavailable(request, exc)
    await _changed(request, state)
    return web.json_response(public(name, updated.fields, "runtime"))


async def delete_tenant(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    name = request.match_info["name"]
    if _is_config_tenant(request, name):
        return problem(409, f"tenant {name!r} is defined in the config file: remove it there")
    try:
        await state.store.delete_tenant(name)
    except NotFound:
        return problem(404, f"no runtime tenant {name!r}")
    except StoreUnavailable as exc:
        return _unavailable(request, exc)
    await _changed(request, state)
    return web.Response(status=204)


def _known_tenant(request: web.Request, state: StoreState, name: str) -> bool:
    return _is_config_tenant(request, name) or name in state.view.tenants


async def issue_key(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    name = request.match_info["name"]
    if not _known_tenant(request, state, name):
        return problem(404, f"no tenant {name!r}")
    try:
        label, expires_at = _key_fields(await _body(request))
    except Invalid as exc:
        return problem(400, str(exc))
    key = "gk-" + secrets.token_urlsafe(32)  # 256 random bits
    row = KeyRow("key_" + secrets.token_hex(8), name, label, hash_key(key), time.time(), expires_at)
    try:
        await state.store.add_key(row)
    except StoreUnavailable as exc:
        return _unavailable(request, exc)
    await _changed(request, state)
    return web.json_response({**row.public(), "key": key}, status=201)


def _key_fields(body: object) -> tuple[str, float | None]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise Invalid("body: must be a JSON object")
    for field, value in body.items():
        if field not in KEY_BODY:
            raise Invalid(f"{field}: unknown field (a key takes label and expires_at)")
        if value is not None and not isinstance(value, KEY_BODY[field]):
            raise Invalid(f"{field}: must be a string")
    label = body.get("label") or ""
    if len(label) > MAX_LABEL:
        raise Invalid(f"label: at most {MAX_LABEL} characters")
    expires = body.get("expires_at")
    if expires is None:
        return label, None
    try:
        moment = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("expires_at: must be an RFC 3339 time, e.g. 2030-01-31T00:00:00Z") from None
    if moment.tzinfo is None:
        raise Invalid("expires_at: must say its time zone (e.g. a trailing Z for UTC)")
    try:  # 9999-12-31T23:59:59-14:00 is past the last moment a date can hold in UTC
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise Invalid("expires_at: must be before the year 10000 (UTC)") from None
    if moment.timestamp() <= time.time():
        raise Invalid("expires_at: is in the past")
    return label, moment.timestamp()


async def list_keys(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    name = request.match_info["name"]
    if not _known_tenant(request, state, name):
        return problem(404, f"no tenant {name!r}")
    try:
        keys = await state.store.keys_of(name)
    except StoreUnavailable:  # the last view still knows them (without the latest last_used_at)
        keys = [k for k in state.view.keys if k.tenant == name]
    return web.json_response({"data": [k.public() for k in keys]})


async def revoke_key(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    try:
        await state.store.revoke_key(request.match_info["key_id"])
    except NotFound:
        return problem(404, f"no key {request.match_info['key_id'][:64]!r}")
    except StoreUnavailable as exc:
        return _unavailable(request, exc)
    await _changed(request, state)
    return web.Response(status=204)


def _unavailable(request: web.Request, exc: StoreUnavailable) -> web.Response:
    request.app[LOGGER].error("store_write_failed", path=request.path[:128], error=str(exc))
    return problem(503, "the store is unavailable: the change was not confirmed; try again")


KEY_ROUTES = [
    web.post("/admin/tenants", create_tenant),
    web.patch("/admin/tenants/{name}", change_tenant),
    web.delete("/admin/tenants/{name}", delete_tenant),
    web.post("/admin/tenants/{name}/keys", issue_key),
    web.get("/admin/tenants/{name}/keys", list_keys, allow_head=False),
    web.delete("/admin/keys/{key_id}", revoke_key),
    *SPEND_ROUTES,
    *PAGE_ROUTES,
]
