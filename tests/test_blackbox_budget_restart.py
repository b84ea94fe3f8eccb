"""Black-box review: a tenant's spend budget across a restart of a real `llm-gateway serve`
with the memory budget and the SQLite store. The spend rows survived but the budget started
from zero: `/admin/tenants` (and the operator's page) said nothing was spent this period while
`/admin/spend` showed the spend, and every restart gave the tenant its whole budget again.
Now the memory budget starts from the store's rows of the current period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.auth import hash_key
from tests._metrics import metric_value
from tests._store import ADMIN_KEY, call
from tests.conftest import CLIENT_KEY, Mock, Process, chat_body, start_gateway_process
from tests.test_store_restart import priced_config

BUDGET = 1.0


def _tenants(period: str) -> list[dict[str, Any]]:
    return [{"name": "capped", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": BUDGET,
             "budget_period": period}]


async def _budget(gateway: Process, tenant: str = "capped") -> dict[str, Any]:
    status, listed = await call("GET", f"{gateway.url}/admin/tenants", ADMIN_KEY)
    assert status == 200
    budget: dict[str, Any] = next(t for t in listed["tenants"] if t["name"] == tenant)["budget"]
    return budget


@pytest.mark.parametrize("period", ["day", "month", "total"])
async def test_the_memory_budget_starts_from_the_stores_spend_this_period(
        mock: Mock, tmp_path: Path, period: str) -> None:
    config, port = priced_config(mock, tmp_path, tenants=_tenants(period))
    first = await start_gateway_process(config, tmp_path, port, name="first")
    try:
        for _ in range(2):
            status, _ = await call("POST", f"{first.url}/v1/chat/completions", CLIENT_KEY, chat_body(stream=False))
            assert status == 200
        spent = (await _budget(first))["spent_usd"]
        assert spent > 0
    finally:
        assert await first.stop() == 0  # SIGTERM: drain writes the pending spend rows
    second = await start_gateway_process(config, tmp_path, port, name="second")
    try:
        budget = await _budget(second)
        assert budget["spent_usd"] == spent
        assert budget["remaining_usd"] == round(BUDGET - spent, 6)
        _, metrics = await call("GET", f"{second.url}/metrics", ADMIN_KEY)
        assert metric_value(metrics, "gateway_budget_remaining_usd", tenant="capped") == budget["remaining_usd"]
        status, _ = await call("POST", f"{second.url}/v1/chat/completions", CLIENT_KEY, chat_body(stream=False))
        assert status == 200
        assert (await _budget(second))["spent_usd"] > spent  # counted on top, not instead
    finally:
        await second.stop()


async def test_a_runtime_tenants_budget_starts_from_its_spend_too(mock: Mock, tmp_path: Path) -> None:
    config, port = priced_config(mock, tmp_path)
    first = await start_gateway_process(config, tmp_path, port, name="first")
    try:
        status, _ = await call("POST", f"{first.url}/admin/tenants", ADMIN_KEY,
                               {"name": "rt", "budget_usd": BUDGET, "budget_period": "day"})
        assert status == 201
        status, key = await call("POST", f"{first.url}/admin/tenants/rt/keys", ADMIN_KEY, {})
        assert status == 201
        status, _ = await call("POST", f"{first.url}/v1/chat/completions", key["key"], chat_body(stream=False))
        assert status == 200
        spent = (await _budget(first, "rt"))["spent_usd"]
        assert spent > 0
    finally:
        assert await first.stop() == 0
    second = await start_gateway_process(config, tmp_path, port, name="second")
    try:
        assert (await _budget(second, "rt"))["spent_usd"] == spent
    finally:
        await second.stop()
