"""The operator's page (`GET /admin/`, `gateway/static/admin.html`) in Debian's chromium,
driven by Playwright, on an in-process gateway with an admin key (SQLite store in memory)
before the mock upstream, plus an upstream on a closed port whose breaker opens.

The operator types the admin key (kept in sessionStorage, for the tab only), sees tenants with
limits and spend, creates a tenant, issues a key (shown once, copied), revokes it, and sees
spend per day and the upstreams' breakers. The layout test takes screenshots at desktop and
phone widths, light and dark; with `UPDATE_SCREENSHOTS=1` they are written to
docs/screenshots/ (otherwise under pytest's tmp dir).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gateway.auth import hash_key
from gateway.state import STORE
from tests._proc import eventually, free_port
from tests.conftest import (
    CLIENT_KEY,
    CLIENT_KEY_B,
    Gateway,
    GatewayFactory,
    Mock,
    auth,
    chat_body,
    raw_config,
)
from tests.test_ui_browser import (
    DESKTOP,
    DOC_SCREENSHOTS,
    PHONE,
    WAIT_MS,
    chromium,
)

try:
    from playwright.async_api import expect
except ImportError:  # skipped (or failed under CI) in `require_browser`
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.browser
ADMIN_KEY = "gw-admin-page-secret"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def with_backup_upstream(start_gateway: GatewayFactory, mock: Mock) -> Gateway:
    """Admin on, prices, a budget on tenant-a, and besides the mock's two upstreams one that
    nobody listens on (its breaker opens at its first failure)."""
    down = {"name": "backup", "dialect": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
            "api_key_env": "MOCK_OPENAI_KEY", "models": ["down-*"], "max_retries": 0, "failures_to_trip": 1,
            "cooldown_seconds": 600, "connect_timeout_seconds": 1}
    return await start_gateway(
        server={"admin_key_sha256": hash_key(ADMIN_KEY)},
        prices={"mock-*": {"input": 2.5, "output": 10.0}, "claude-*": {"input": 0.8, "output": 4.0}},
        tenants=[{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 25.0,
                  "budget_period": "month", "requests_per_minute": 120},
                 {"name": "tenant-b", "key_sha256": hash_key(CLIENT_KEY_B), "priority": 10}],
        upstreams=[*raw_config(mock.url)["upstreams"], down])


async def traffic(gateway: Gateway) -> None:
    """Some answered requests (tagged), and one to the closed port (its breaker opens)."""
    for key, tags in ((CLIENT_KEY, "search"), (CLIENT_KEY, "search,batch"), (CLIENT_KEY_B, "chat")):
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False),
                                             headers={**auth(key), "x-gateway-tags": tags})
        assert response.status == 200
    response = await gateway.client.post("/v1/chat/completions", json=chat_body("down-1", stream=False),
                                         headers=auth(CLIENT_KEY_B))
    assert response.status == 502

    async def written() -> bool:
        answer = await gateway.client.get("/admin/spend", headers=auth(ADMIN_KEY))
        return sum(r["requests"] for r in (await answer.json())["data"]) >= 3

    await eventually(written, timeout=5, what="the spend rows")


async def open_page(browser: Browser, gateway: Gateway, viewport: dict[str, int] = DESKTOP,
                    scheme: str = "light") -> tuple[Any, Page, list[str]]:
    context = await browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = await page.goto(gateway.url("/admin/"))
    assert response is not None and response.status == 200
    return context, page, errors


async def log_in(page: Page, key: str = ADMIN_KEY) -> None:
    await page.fill("#admin-key", key)
    await page.click("#open")


async def test_the_operator_manages_tenants_and_keys_and_sees_spend_and_upstreams(
        browser: Browser, start_gateway: GatewayFactory, mock: Mock) -> None:
    gateway = await with_backup_upstream(start_gateway, mock)
    await traffic(gateway)
    context, page, errors = await open_page(browser, gateway)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url("").rstrip("/"))
    try:
        await expect(page.locator("#locked")).to_be_visible()
        await log_in(page, "not-the-admin-key")
        await expect(page.locator("#error")).to_contain_text("refused (401)")
        await expect(page.locator("#panels")).to_be_hidden()
        await log_in(page)
        await expect(page.locator("#panels")).to_be_visible()
        # tenants: limits, what remains, spend this period
        row_a = page.locator('#tenants tr[data-tenant="tenant-a"]')
        await expect(row_a).to_contain_text("120")
        await expect(row_a).to_contain_text("this month")
        await expect(row_a).to_contain_text("$25.00")
        await expect(page.locator('#tenants tr[data-tenant="tenant-b"]')).to_contain_text("config")
        # spend per day: bars for today, one colour per tenant
        await expect(page.locator("#chart rect")).to_have_count(2)
        await expect(page.locator("#legend")).to_contain_text("tenant-a")
        await page.select_option("#group-by", "tag")
        await expect(page.locator("#legend")).to_contain_text("search")
        # upstream health: the closed port's breaker is open, with its last error
        await expect(page.locator('#upstreams tr[data-upstream="backup"]')).to_contain_text("open")
        await expect(page.locator('#upstreams tr[data-upstream="backup"]')).to_contain_text("ClientConnectorError")
        await expect(page.locator('#upstreams tr[data-upstream="backup"]')).to_contain_text("down")
        await expect(page.locator('#upstreams tr[data-upstream="mock"]')).to_contain_text("closed mock-1")
        await expect(page.locator('#upstreams tr[data-upstream="mock"]')).to_contain_text("up")
        # a new tenant, then a key for it, shown once and copied
        await page.click("#new-tenant-box summary")
        await page.fill("#t-name", "web-app")
        await page.fill("#t-rpm", "60")
        await page.click("#new-tenant button[type=submit]")
        await expect(page.locator('#tenants tr[data-tenant="web-app"]')).to_contain_text("runtime")
        await expect(page.locator("#key-tenant")).to_have_value("web-app")
        await page.fill("#k-label", "laptop")
        await page.click("#issue button[type=submit]")
        await expect(page.locator("#issued")).to_be_visible()
        key = await page.input_value("#issued-key")
        assert key.startswith("gk-")
        await page.click("#copy")
        await expect(page.locator("#copy")).to_have_text("Copied")
        assert await page.evaluate("navigator.clipboard.readText()") == key
        await expect(page.locator("#keys tbody tr")).to_have_count(1)
        await expect(page.locator("#keys tbody tr")).to_contain_text("laptop")
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False), headers=auth(key))
        assert response.status == 200
        # the tab keeps the admin key, never the issued key
        stored = await page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
        assert ADMIN_KEY in stored and key not in stored
        await page.reload()
        await expect(page.locator("#panels")).to_be_visible()
        await expect(page.locator("#issued")).to_be_hidden()
        assert key not in await page.content()
        # revoke: refused at once
        await page.select_option("#key-tenant", "web-app")
        await expect(page.locator("#keys tbody tr")).to_have_count(1)
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#keys tbody tr button")
        await expect(page.locator("#keys tbody tr")).to_have_count(0)
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False), headers=auth(key))
        assert response.status == 401
        # another tab has no key
        other = await context.browser.new_context()
        try:
            tab = await other.new_page()
            await tab.goto(gateway.url("/admin/"))
            await expect(tab.locator("#locked")).to_be_visible()
        finally:
            await other.close()
        await page.click("#forget")
        await expect(page.locator("#locked")).to_be_visible()
        assert await page.evaluate("sessionStorage.length") == 0
        assert errors == []
    finally:
        await context.close()


async def seed_history(gateway: Gateway) -> None:
    """Three weeks of spend rows behind today's, written through the app's own store, so the
    chart has something to show (the screenshots only: nothing is asserted on them)."""
    store = gateway.client.app[STORE].store
    now = datetime.now(UTC)
    batch = {}
    for back in range(1, 22):
        day = (now - timedelta(days=back)).strftime("%Y-%m-%d")
        for n, (tenant, model) in enumerate((("tenant-a", "mock-1"), ("tenant-b", "claude-3-haiku"),
                                             ("web-app", "mock-1"))):
            requests = 40 + (back * 37 + n * 53) % 90
            batch[(day, tenant, f"config:{n}", model, "")] = [
                requests, requests * 420, requests * 180, requests * (900 + 400 * n + (back % 5) * 120)]
    await store.add_spend(batch)


@pytest.mark.parametrize(("name", "viewport", "scheme"), [
    ("admin-light", DESKTOP, "light"), ("admin-dark", DESKTOP, "dark"), ("admin-mobile", PHONE, "light"),
])
async def test_screenshots_of_the_operators_page(
        browser: Browser, start_gateway: GatewayFactory, mock: Mock, name: str, viewport: dict[str, int],
        scheme: str, tmp_path: Path) -> None:
    gateway = await with_backup_upstream(start_gateway, mock)
    response = await gateway.client.post("/admin/tenants", json={"name": "web-app", "requests_per_minute": 300},
                                         headers=auth(ADMIN_KEY))
    assert response.status == 201
    for label in ("ci", "laptop"):
        await gateway.client.post("/admin/tenants/web-app/keys", json={"label": label}, headers=auth(ADMIN_KEY))
    await traffic(gateway)
    await seed_history(gateway)
    context, page, errors = await open_page(browser, gateway, viewport, scheme)
    try:
        await log_in(page)
        await expect(page.locator("#panels")).to_be_visible()
        await page.select_option("#key-tenant", "web-app")
        await expect(page.locator("#keys tbody tr")).to_have_count(2)
        await page.fill("#k-label", "staging")
        await page.click("#issue button[type=submit]")
        await expect(page.locator("#issued")).to_be_visible()
        await expect(page.locator("#chart rect").first).to_be_visible()
        # nothing is wider than the window, on a phone too (tables scroll inside their cards)
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        folder = DOC_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"{name}.png"
        await page.screenshot(path=shot, full_page=True)
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert errors == []
    finally:
        await context.close()
