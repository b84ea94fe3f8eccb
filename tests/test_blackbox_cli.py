"""Black-box review of `llm-gateway keys` / `llm-gateway spend` against a gateway whose admin
routes are off (no `server.admin_key_sha256`): the one line says so. It said
`llm-gateway: 404: 404: Not Found`, which reads like a missing tenant or key."""

from __future__ import annotations

import pytest

from tests.conftest import GatewayFactory
from tests.test_store_cli import cli


@pytest.mark.parametrize("args", [("keys", "list", "tenant-a"), ("keys", "revoke", "key_x"), ("spend",)])
async def test_the_cli_says_the_admin_routes_are_off(start_gateway: GatewayFactory, args: tuple[str, ...]) -> None:
    gateway = await start_gateway()  # no admin key: every admin route is a 404
    url = gateway.url("").rstrip("/")
    code, out, err = await cli(*args, "--url", url, "--admin-key", "any")
    assert code == 1 and out == ""
    assert err.strip() == f"llm-gateway: 404: {url} has no admin routes (is server.admin_key_sha256 set there?)"
