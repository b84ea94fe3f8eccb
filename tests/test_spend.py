"""Price tables and costs: glob order, cache rates, exact micro-dollar arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.spend import Price, PriceTable, micros_to_usd, usd_to_micros

TABLE = PriceTable({
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4o*": Price(input=2.50, output=10.00, cache_read=1.25),
    "claude-haiku-*": Price(input=1.00, output=5.00, cache_read=0.10, cache_write=1.25),
    "claude-*": Price(input=3.00, output=15.00),
    "free-?": Price(input=0, output=0),
})


@pytest.mark.parametrize(("model", "price"), [
    ("gpt-4o-mini", Price(0.15, 0.60)),              # exact name, listed first
    ("gpt-4o", Price(2.50, 10.00, cache_read=1.25)),
    ("gpt-4o-2024-08-06", Price(2.50, 10.00, cache_read=1.25)),
    ("claude-haiku-4-5", Price(1.00, 5.00, 0.10, 1.25)),  # first match wins over "claude-*"
    ("claude-sonnet-4", Price(3.00, 15.00)),
    ("free-1", Price(0, 0)),
    ("free-12", None),                               # ? is one character
    ("GPT-4o-mini", None),                           # case-sensitive
    ("llama-3", None),
])
def test_price_for_first_glob_match_in_order(model: str, price: Price | None) -> None:
    assert TABLE.price_for(model) == price


def test_order_is_the_given_order() -> None:
    broad_first = PriceTable({"gpt-*": Price(1, 1), "gpt-4o-mini": Price(0.15, 0.60)})
    assert broad_first.price_for("gpt-4o-mini") == Price(1, 1)
    assert len(broad_first) == 2


def test_cost_of_plain_usage() -> None:
    # 1000 * 0.15 + 500 * 0.60 = 150 + 300 micro-dollars
    assert TABLE.cost_micros("gpt-4o-mini", 1000, 500) == 450
    assert TABLE.cost("gpt-4o-mini", 1000, 500) == 0.00045
    # a million of each at $3 / $15
    assert TABLE.cost("claude-sonnet-4", 1_000_000, 1_000_000) == 18.0


def test_cache_tokens_at_their_own_rates_when_set() -> None:
    # 100 * 1.00 + 10 * 5.00 + 1000 * 0.10 + 200 * 1.25 = 100 + 50 + 100 + 250
    assert TABLE.cost_micros("claude-haiku-4-5", 100, 10, cache_read_tokens=1000,
                             cache_write_tokens=200) == 500


def test_cache_tokens_at_the_input_rate_when_unset() -> None:
    # gpt-4o: cache_read 1.25 set, cache_write unset -> input 2.50
    assert TABLE.cost_micros("gpt-4o", 0, 0, cache_read_tokens=1000) == 1250
    assert TABLE.cost_micros("gpt-4o", 0, 0, cache_write_tokens=1000) == 2500
    # claude-sonnet: neither set
    assert TABLE.cost_micros("claude-sonnet-4", 0, 0, 1000, 1000) == 6000


def test_unpriced_model_costs_none_and_reserves_nothing() -> None:
    assert TABLE.cost("llama-3", 1000, 1000) is None
    assert TABLE.cost_micros("llama-3", 1000, 1000) is None
    assert TABLE.worst_case("llama-3", 1000, 1000) == 0.0


def test_rounding_is_to_the_nearest_micro_dollar_halves_up() -> None:
    assert TABLE.cost_micros("gpt-4o-mini", 1, 0) == 0      # 0.15
    assert TABLE.cost_micros("gpt-4o-mini", 3, 0) == 0      # 0.45
    assert TABLE.cost_micros("gpt-4o-mini", 4, 0) == 1      # 0.60
    assert TABLE.cost_micros("gpt-4o-mini", 10, 0) == 2     # 1.5 -> 2
    assert TABLE.cost_micros("gpt-4o-mini", 0, 1) == 1      # 0.60


def test_worst_case_rounds_up_and_takes_the_dearer_prompt_rate() -> None:
    assert TABLE.worst_case_micros("gpt-4o-mini", 1, 0) == 1           # 0.15 up
    assert TABLE.worst_case_micros("gpt-4o-mini", 1000, 4096) == 150 + 2458  # 2457.6 up
    assert TABLE.worst_case("gpt-4o-mini", 1000, 4096) == 0.002608
    # haiku: cache_write 1.25 > input 1.00, so the prompt is reserved at 1.25
    assert TABLE.worst_case_micros("claude-haiku-4-5", 1000, 1000) == 1250 + 5000


def test_float_prices_are_the_decimals_written_not_binary_floats() -> None:
    # 0.1 + 0.2 in floats is 0.30000000000000004; in prices it is exactly 0.3 per token
    table = PriceTable({"m": Price(input=0.1, output=0.2)})
    assert table.cost_micros("m", 10_000_000, 10_000_000) == 3_000_000
    assert table.cost("m", 10_000_000, 10_000_000) == 3.0


def test_negative_counts_and_prices_are_refused() -> None:
    with pytest.raises(ValueError):
        TABLE.cost("gpt-4o-mini", -1, 0)
    with pytest.raises(ValueError):
        TABLE.worst_case("gpt-4o-mini", 0, -1)
    with pytest.raises(ValueError):
        Price(input=-0.1, output=1)
    with pytest.raises(ValueError):
        Price(input=1, output=float("nan"))
    with pytest.raises(ValueError):
        Price(input=1, output=1, cache_read=float("inf"))


def test_usd_micros_round_trip() -> None:
    assert usd_to_micros(50.0) == 50_000_000
    assert usd_to_micros(0.1 + 0.2) == 300_000
    assert usd_to_micros(0.0000005) == 1   # halves up
    assert micros_to_usd(1) == 0.000001
    with pytest.raises(ValueError):
        usd_to_micros(float("nan"))


COUNTS = st.integers(min_value=0, max_value=10_000_000)
PRICES = st.decimals(min_value=0, max_value=100, places=4).map(float)


@given(PRICES, PRICES, COUNTS, COUNTS)
def test_cost_is_the_exact_product_rounded_once(inp: float, out: float, p: int, c: int) -> None:
    table = PriceTable({"*": Price(inp, out)})
    exact = p * Fraction(repr(inp)) + c * Fraction(repr(out))
    micros = table.cost_micros("x", p, c)
    assert micros is not None
    assert abs(micros - exact) <= Fraction(1, 2)
    assert table.worst_case_micros("x", p, c) >= exact > table.worst_case_micros("x", p, c) - 1
    assert usd_to_micros(micros_to_usd(micros)) == micros


@given(st.lists(st.integers(min_value=0, max_value=10**12), max_size=50))
def test_sums_of_micros_are_exact_in_usd_round_trips(amounts: list[int]) -> None:
    assert usd_to_micros(micros_to_usd(sum(amounts))) == sum(amounts)
