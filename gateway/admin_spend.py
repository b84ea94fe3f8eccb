"""`GET /admin/spend?from=&to=&group_by=tenant|key|model|tag&format=json|csv`: spend per UTC
day from the store's rows (written at most about a second after each request settled).

`from` and `to` are days (YYYY-MM-DD, inclusive; by default the last 30 days up to today, UTC),
at most 366 days apart. A bad parameter is a 400 naming it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from .admin import authorize
from .state import STORE
from .store.base import StoreUnavailable
from .store.spend import GROUPS, as_csv, grouped

PARAMS = ("from", "to", "group_by", "format")
DEFAULT_DAYS = 30
MAX_DAYS = 366


class _Bad(ValueError):
    pass


def _day(query: dict[str, str], name: str, default: date) -> date:
    value = query.get(name)
    if value is None:
        return default
    try:
        return date.fromisoformat(value) if len(value) == 10 else _bad(name, value)
    except ValueError:
        return _bad(name, value)


def _bad(name: str, value: str) -> date:
    raise _Bad(f"{name}: must be a day as YYYY-MM-DD (got {value[:40]!r})")


def _params(query: dict[str, str]) -> tuple[date, date, str | None, str]:
    for name in query:
        if name not in PARAMS:
            raise _Bad(f"{name[:40]}: unknown parameter (use {', '.join(PARAMS)})")
    today = datetime.now(UTC).date()
    last = _day(query, "to", today)
    first = _day(query, "from", last - timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise _Bad("from: is after to")
    if (last - first).days >= MAX_DAYS:
        raise _Bad(f"from: at most {MAX_DAYS} days from `to`")
    group_by = query.get("group_by")
    if group_by is not None and group_by not in GROUPS:
        raise _Bad(f"group_by: must be one of {', '.join(GROUPS)}")
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise _Bad("format: must be json or csv")
    return first, last, group_by, fmt


async def spend(request: web.Request) -> web.StreamResponse:
    authorize(request)
    state = request.app.get(STORE)
    if state is None:
        return web.json_response({"error": "the store opens at start when server.admin_key_sha256 is set"},
                                 status=503)
    try:
        first, last, group_by, fmt = _params(dict(request.query))
    except _Bad as exc:
        return web.json_response({"error": str(exc)}, status=400)
    try:
        rows = grouped(await state.store.spend(first, last), group_by)
    except StoreUnavailable:
        return web.json_response({"error": "the store is unavailable: try again"}, status=503)
    if fmt == "csv":
        return web.Response(text=as_csv(rows, group_by), content_type="text/csv")
    return web.json_response({"data": rows})


SPEND_ROUTES = [web.get("/admin/spend", spend, allow_head=False)]
