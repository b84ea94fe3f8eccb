"""`Price` works a cost out in integers over one denominator: the same exact fraction, rounded
the same way, as the rates' fractions (`0.15` is 3/20) give; and `usd_to_micros` so too."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from gateway.spend import Price, PriceTable, usd_to_micros

_RATES = st.one_of(st.sampled_from([0.0, 0.15, 0.6, 2.5, 1.25, 0.075, 1 / 3, 1e-9, 123456.789]),
                   st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
_TOKENS = st.integers(min_value=0, max_value=10**9)


def _fraction(rate: float) -> Fraction:
    return Fraction(repr(float(rate)))


@given(_RATES, _RATES, st.one_of(st.none(), _RATES), st.one_of(st.none(), _RATES),
       _TOKENS, _TOKENS, _TOKENS, _TOKENS)
def test_cost_is_the_fractions_cost(rate_in: float, rate_out: float, read: float | None,
                                    write: float | None, prompt: int, completion: int,
                                    cached: int, written: int) -> None:
    price = Price(rate_in, rate_out, read, write)
    exact = (prompt * _fraction(rate_in) + completion * _fraction(rate_out)
             + cached * _fraction(rate_in if read is None else read)
             + written * _fraction(rate_in if write is None else write))
    assert price.cost_exact(prompt, completion, cached, written) == exact
    assert price.cost_rounded(prompt, completion, cached, written) == math.floor(exact + Fraction(1, 2))
    table = PriceTable({"m": price})
    worst = math.ceil(prompt * max(_fraction(rate_in), _fraction(rate_in if write is None else write))
                      + completion * _fraction(rate_out))
    assert table.worst_case_micros("m", prompt, completion) == worst


def test_equal_prices_stay_equal() -> None:
    assert Price(0.15, 0.6) == Price(0.15, 0.6, None, None)
    assert Price(0.15, 0.6) != Price(0.15, 0.6, 0.075)


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                 st.integers(min_value=-10**15, max_value=10**15).map(lambda m: m / 1_000_000),
                 st.sampled_from([0.0, -0.0, 5e-7, -5e-7, 2.5e-7, 1.5e-6, 1e22, 5e-324])))
def test_usd_to_micros_is_the_fractions_rounding(usd: float) -> None:
    assert usd_to_micros(usd) == math.floor(Fraction(repr(usd)) * 1_000_000 + Fraction(1, 2))
