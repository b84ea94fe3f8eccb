"""The store on the app: opened at start (a store that can't be reached stops the start with
one line), the view kept in step with it, spend rows and `last_used_at` written in the
background, and what is pending written at the end (after drain).

The store opens only when the admin routes are on (`server.admin_key_sha256`): nothing else
writes tenants or keys, or reads spend. Lost later, the view keeps serving the keys it has and
admin writes answer 503; pending rows wait in memory and are written once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from ..config import Config, Tenant
from ..live import Snapshot
from ..metrics import Metrics
from ..record import Record
from ..state import LIVE, LOGGER, METRICS, STORE
from .base import Store, StoreUnavailable
from .redis import RedisStore
from .spend import SpendBook
from .sqlite import SqliteStore
from .view import KeyView

#: spend rows are written this often (so at most about this late, plus the write)
FLUSH_SECONDS = 0.5
#: how long the last write at shutdown may take
FINAL_WRITE_SECONDS = 5.0
#: runtime tenants that get their own metric label value (labels stay bounded)
MAX_TENANT_LABELS = 1000


@dataclass(slots=True)
class StoreState:
    store: Store
    view: KeyView
    book: SpendBook = field(default_factory=SpendBook)
    down: str | None = None  # why the last read or write failed, while it does
    labelled: set[str] = field(default_factory=set)  # runtime tenant names given to the metrics




def make_store(config: Config, config_path: str | None) -> Store:
    """`[store]`: sqlite's path is relative to the config file; with no config file (tests,
    `build_app` alone) a relative path is an in-memory database."""
    if config.store.backend == "redis":
        return RedisStore(config.ratelimit.redis_url, config.ratelimit.key_prefix)
    path = Path(config.store.path)
    if not path.is_absolute():
        if config_path is None:
            return SqliteStore(":memory:")
        path = Path(config_path).resolve().parent / path
    return SqliteStore(str(path))


def install_store(app: web.Application, config: Config, config_path: str | None) -> None:
    """Called by `build_app` once `LIVE` is set."""
    if not config.server.admin_key_sha256:
        return
    view = KeyView()
    app[LIVE].current = Snapshot.of(config, view)
    app[STORE] = StoreState(make_store(config, config_path), view)
    app.cleanup_ctx.append(_store_ctx)


async def probe_store(config: Config, config_path: str | None) -> None:
    """Open and close the store once (before workers start): `StoreUnavailable` if it can't."""
    if config.server.admin_key_sha256:
        store = make_store(config, config_path)
        await store.open()
        await store.close()


async def refresh(state: StoreState, logger: FilteringBoundLogger, metrics: Metrics) -> None:
    """Read the store again into the view (after this process changed it: at once). Runtime
    tenants become metric label values, at most `MAX_TENANT_LABELS` names in the process's
    life (a label value is never taken back; then `other`)."""
    refused = state.view.replace(await state.store.load())
    for name in refused:
        logger.error("store_tenant_invalid", tenant=name)
    room = MAX_TENANT_LABELS - len(state.labelled)
    new = [name for name in state.view.tenants if name not in state.labelled][:max(0, room)]
    if new:
        state.labelled.update(new)
        metrics.add_tenants(new)


async def spent_this_period(state: StoreState, tenants: Iterable[Tenant], today: date) -> dict[str, int]:
    """Micro-dollars each budgeted tenant spent in its current period, from the spend rows
    (read once at start, so a memory budget does not begin each process life at zero)."""
    firsts = {t.name: _period_start(t.budget_period, today) for t in tenants if t.budget_usd is not None}
    if not firsts:
        return {}
    spent = dict.fromkeys(firsts, 0)
    for (day, tenant, *_), counts in await state.store.spend(min(firsts.values()), today):
        if tenant in firsts and date.fromisoformat(day) >= firsts[tenant]:
            spent[tenant] += counts[3]
    return spent


def _period_start(period: str, today: date) -> date:
    if period == "day":
        return today
    return today.replace(day=1) if period == "month" else date(1970, 1, 1)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    state, logger, metrics = app[STORE], app[LOGGER], app[METRICS]
    await state.store.open()  # StoreUnavailable: the start fails with its one line
    try:
        await refresh(state, logger, metrics)
    except StoreUnavailable:
        await state.store.close()
        raise
    tasks = [asyncio.create_task(_watch(state, logger, metrics)), asyncio.create_task(_write(state, logger))]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    try:
        async with asyncio.timeout(FINAL_WRITE_SECONDS):
            await _write_pending(state)
    except (StoreUnavailable, TimeoutError) as exc:
        logger.error("spend_not_written", rows=len(state.book), error=str(exc) or "timeout")
    await state.store.close()


def _noted(state: StoreState, logger: FilteringBoundLogger, exc: StoreUnavailable | None) -> None:
    """One line when the store goes away and one when it is back, not one per try."""
    if exc is not None and state.down is None:
        logger.error("store_unavailable", error=str(exc))
        state.down = str(exc)
    elif exc is None and state.down is not None:
        logger.info("store_recovered")
        state.down = None


async def _watch(state: StoreState, logger: FilteringBoundLogger, metrics: Metrics) -> None:
    """Another worker or replica changed tenants or keys: the view follows within a second."""
    store = state.store
    while True:
        await store.wait_change(store.poll_seconds)
        try:
            if await store.version() != state.view.version:
                await refresh(state, logger, metrics)
        except StoreUnavailable as exc:
            _noted(state, logger, exc)
            continue
        _noted(state, logger, None)


async def _write(state: StoreState, logger: FilteringBoundLogger) -> None:
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            await _write_pending(state)
        except StoreUnavailable as exc:
            _noted(state, logger, exc)


async def _write_pending(state: StoreState) -> None:
    """Spend rows and `last_used_at`; what the store refuses stays pending."""
    batch = state.book.take()
    if batch:
        try:
            await state.store.add_spend(batch)
        except BaseException:
            state.book.give_back(batch)
            raise
    used = state.view.take_used()
    if used:
        try:
            await state.store.touch_keys(used)
        except BaseException:
            state.view.give_back_used(used)
            raise


def note_request(app: web.Application, record: Record) -> None:
    """A request that an upstream answered adds to its spend row (the middleware calls this
    once per request, after its log line). The cost is the one its budget was charged."""
    state = app.get(STORE)
    usage = record.usage
    if state is None or not record.charged or usage is None or record.tenant is None:
        return
    state.book.note(record.tenant.name, record.key_id or "", record.charged_model or record.model or "",
                    record.tags, usage.prompt_tokens, usage.completion_tokens, record.cost_micros or 0)
