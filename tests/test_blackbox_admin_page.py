"""Black-box review of the operator's page (`GET /admin/`) in Debian's chromium: the spend
chart's money axis shows its labels whole. With small sums (`$0.001053`) the labels were cut
off at the chart's left edge (a fixed 52 px margin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from gateway.auth import hash_key
from gateway.state import STORE
from tests.conftest import GatewayFactory
from tests.test_admin_page_browser import ADMIN_KEY, browser, log_in, open_page  # noqa: F401 (fixture)

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("micros", [1053, 12_345_670_000])  # $0.001053 and $12345.67 a day
async def test_the_spend_axis_labels_are_whole(browser: Browser, start_gateway: GatewayFactory,  # noqa: F811
                                               micros: int) -> None:
    gateway = await start_gateway(server={"admin_key_sha256": hash_key(ADMIN_KEY)})
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    await gateway.client.app[STORE].store.add_spend({(day, "tenant-a", "config:0", "mock-1", ""): [1, 1, 1, micros]})
    context, page, errors = await open_page(browser, gateway)
    try:
        await log_in(page)
        await page.wait_for_selector("#chart svg text.axis")
        labels = await page.eval_on_selector_all(
            "#chart svg text.axis", "(nodes) => nodes.filter((n) => n.textContent.startsWith('$'))"
            ".map((n) => [n.textContent, n.getBBox().x])")
        assert len(labels) == 3, labels
        assert all(x >= 0 for _, x in labels), labels  # none starts left of the chart
        assert errors == []
    finally:
        await context.close()
