"""The shipped price table: what it prices (snapshot names resolve to their family, [prices]
first), that it ships as package data, what `check-config` says of each route target, and the
403 `model_unpriced` a tenant with a budget gets for a model nobody priced."""

from __future__ import annotations

import math
import tomllib
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import hash_key
from gateway.cli import main
from gateway.config import PriceSpec
from gateway.dialects import Usage
from gateway.prices import builtin_prices, require_prices
from gateway.spend import Price, PriceTable
from tests.conftest import (
    CLIENT_KEY,
    REPO,
    UPSTREAM_ENV,
    GatewayFactory,
    Mock,
    auth,
    chat_body,
    raw_config,
    write_toml,
)

BUILTIN = builtin_prices()
LABEL = f"built-in table ({BUILTIN.taken.isoformat()})"


def test_the_table_is_dated_and_says_where_every_price_came_from() -> None:
    assert isinstance(BUILTIN.taken, date)
    assert set(BUILTIN.sources) == {"openai", "anthropic"}
    assert all(url.startswith("https://") for url in BUILTIN.sources.values())
    assert {listed.provider for listed in BUILTIN.by_name.values()} == {"openai", "anthropic"}
    assert all(listed.source for listed in BUILTIN.by_name.values())
    # chat and embedding models of both providers
    for name in ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "text-embedding-3-small", "claude-haiku-4-5",
                 "claude-sonnet-4-5", "claude-opus-4-1"):
        assert BUILTIN.find(name) is not None, name


def test_the_table_ships_as_package_data() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "prices.toml" in project["tool"]["setuptools"]["package-data"]["gateway"]


@pytest.mark.parametrize(("model", "family"), [
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
])
def test_a_snapshot_name_costs_what_its_family_costs(model: str, family: str) -> None:
    assert BUILTIN.find(model) == BUILTIN.by_name[family]


def test_a_listed_snapshot_keeps_its_own_price_and_unknown_names_are_unpriced() -> None:
    assert BUILTIN.find("gpt-4o-2024-05-13") != BUILTIN.find("gpt-4o")
    for name in ("gpt-4o-mini-x", "mock-1", "claude-3-haiku-2", "gpt-4o-mini-realtime-preview"):
        assert BUILTIN.find(name) is None, name


def test_prices_come_first_then_the_built_in_table() -> None:
    table = PriceTable.from_config({"gpt-4o-*": PriceSpec(input=9.0, output=9.0)}, BUILTIN)
    assert table.price_for("gpt-4o-mini") == Price(9.0, 9.0)
    assert table.source_for("gpt-4o-mini") == "[prices]"
    assert table.price_for("gpt-4o") == Price(2.5, 10.0, 1.25)
    assert table.source_for("gpt-4o") == LABEL
    assert (table.price_for("llama-3"), table.source_for("llama-3")) == (None, "unpriced")
    # 1000 prompt tokens (200 cached), 100 completion on gpt-4o-mini at 0.15 / 0.075 / 0.60
    usage = Usage(1000, 100, True, cache_read_tokens=200)
    assert PriceTable({}, BUILTIN).usage_cost_micros("gpt-4o-mini-2024-07-18", usage) == 120 + 15 + 60
    assert PriceTable({}).price_for("gpt-4o-mini") is None  # without the table: as before


def test_require_prices_names_every_unpriced_model() -> None:
    table = PriceTable({}, BUILTIN)
    require_prices(table, ["gpt-4o-mini", "claude-haiku-4-5"])
    with pytest.raises(Exception, match="'llama-3', 'mock-1'") as info:
        require_prices(table, ["gpt-4o-mini", "mock-1", "llama-3"])
    assert (info.value.status, info.value.code) == (403, "model_unpriced")  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", [
    'sources = {}\n[[models]]\nnames = ["a"]\ninput = 1\noutput = 1\n',  # no date
    'taken = 2026-01-01\nsources = {}\n[[models]]\nnames = ["a"]\ninput = 1\n',  # no output
    'taken = 2026-01-01\nsources = {}\n[[models]]\nnames = ["a"]\ninput = "1"\noutput = 1\n',
    'taken = 2026-01-01\nsources = {}\n[[models]]\nnames = ["a"]\ninput = -1\noutput = 1\n',
    'taken = 2026-01-01\nsources = {}\n[[models]]\nnames = ["a", "a"]\ninput = 1\noutput = 1\n',
])
def test_a_malformed_table_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        builtin_prices(text)


# ------------------------------------------------------------------------------ through HTTP

async def test_gpt_4o_mini_is_priced_with_no_prices_section(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("gpt-4o-mini", stream=False), headers=auth())
    assert response.status == 200
    usage = (await response.json())["usage"]
    # $0.15 and $0.60 per 1M: micro-dollars a token, rounded once to whole micro-dollars
    micros = math.floor(Fraction(usage["prompt_tokens"] * 15 + usage["completion_tokens"] * 60, 100)
                        + Fraction(1, 2))
    cost = micros / 1_000_000
    assert cost > 0
    assert response.headers["x-gateway-cost-usd"] == f"{cost:.6f}"
    [line] = gateway.request_logs()
    assert line["cost_usd"] == pytest.approx(cost, abs=1e-12)
    assert "unpriced" not in line
    # the model label is the configured glob it matched (bounded series)
    assert await gateway.metric("gateway_cost_usd_total", tenant="tenant-a", model="gpt-*") \
        == pytest.approx(cost, abs=1e-12)


def budget_tenant() -> list[dict[str, Any]]:
    return [{"name": "tenant-a", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 5.0}]


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("/v1/chat/completions", chat_body("gpt-nobody-priced", stream=False),
     {"error": {"type": "permission_error", "code": "model_unpriced"}}),
    ("/v1/chat/completions", chat_body("gpt-nobody-priced"),
     {"error": {"type": "permission_error", "code": "model_unpriced"}}),
    ("/v1/messages", {"model": "gpt-nobody-priced", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
     {"type": "error", "error": {"type": "permission_error"}}),
    ("/v1/embeddings", {"model": "gpt-nobody-priced", "input": "hi"},
     {"error": {"type": "permission_error", "code": "model_unpriced"}}),
])
async def test_a_budget_tenant_is_refused_an_unpriced_model_in_the_routes_shape(
    start_gateway: GatewayFactory, mock: Mock, path: str, body: dict[str, Any], expected: dict[str, Any],
) -> None:
    gateway = await start_gateway(tenants=budget_tenant())
    response = await gateway.client.post(path, json=body, headers=auth())
    answer = await response.json()
    assert response.status == 403, answer
    assert "x-ratelimit-limit-requests" in response.headers
    for key, value in expected.items():
        if isinstance(value, dict):
            assert {k: answer[key][k] for k in value} == value, answer
        else:
            assert answer[key] == value
    message = answer["error"]["message"]
    assert "gpt-nobody-priced" in message and "budget" in message
    assert not mock.state.requests  # refused before any upstream call
    [line] = gateway.request_logs()
    assert (line["status"], line["outcome"]) == (403, "model_unpriced")
    # a priced model still goes through, and so does everything for a tenant with no budget
    ok = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("gpt-4o-mini", stream=False), headers=auth())
    assert ok.status == 200, await ok.text()


async def test_the_simple_events_refusal_is_a_403_event(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(tenants=budget_tenant())
    response = await gateway.client.post("/api/chat/stream", json=chat_body("claude-nobody-priced"),
                                         headers=auth())
    assert response.status == 403
    body = await response.read()
    assert body.startswith(b"event: error\ndata: {") and b'"code":403' in body


async def test_a_tenant_without_a_budget_may_use_an_unpriced_model(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body("gpt-nobody-priced", stream=False), headers=auth())
    assert response.status == 200
    [line] = gateway.request_logs()
    assert (line["cost_usd"], line["unpriced"]) == (0.0, True)


# ------------------------------------------------------------------------------ check-config

def test_check_config_prints_each_targets_price_and_source_and_warns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UPSTREAM_ENV.items():
        monkeypatch.setenv(name, value)
    raw = raw_config("http://127.0.0.1:9", tenants=[
        {"name": "capped", "key_sha256": hash_key(CLIENT_KEY), "budget_usd": 5.0, "models": ["chat-*"]},
        {"name": "free", "key_sha256": hash_key("other")}])
    raw["routes"] = [{"model": "chat-default", "targets": [
        "mock:gpt-4o-mini", "mock-anthropic:claude-haiku-4-5-20251001", "mock:mock-1"]}]
    path = write_toml(tmp_path / "gateway.toml", raw)
    with path.open("a") as toml:
        toml.write('[prices]\n"gpt-4o-mini" = { input = 0.2, output = 0.7 }\n')
    assert main(["check-config", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    block = captured.out.split("route targets' prices (USD per 1M tokens)\n", 1)[1]
    rows = [[c.strip() for c in line.split("  ") if c.strip()] for line in block.splitlines()[2:]]
    assert ["chat-default", "mock:gpt-4o-mini", "0.2", "0.7", "-", "-", "[prices]"] in rows
    assert ["chat-default", "mock-anthropic:claude-haiku-4-5-20251001", "1", "5", "0.1", "1.25", LABEL] in rows
    assert ["chat-default", "mock:mock-1", "-", "-", "-", "-", "unpriced"] in rows
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    # only the tenant with a budget, only for what it can reach and nobody priced
    assert len(warnings) == 1, warnings
    assert "'capped'" in warnings[0] and "mock:mock-1" in warnings[0] and "model_unpriced" in warnings[0]
