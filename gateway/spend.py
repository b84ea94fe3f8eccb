"""Prices -> the cost of a usage record, exact to the micro-dollar (no I/O).

Money is counted in whole micro-dollars (`int`, 1 USD = 1_000_000): sums of costs, budgets and
reservations are then exact, where float dollars would drift. A price is USD per 1M tokens,
which is the same number as micro-dollars per token, so a cost is `tokens * price` micro-dollars,
computed as an exact fraction (the price as written in the config, 0.15 is 3/20) and rounded
once per request: to the nearest micro-dollar for a real cost, UP for a worst case, so a
reservation is never smaller than what it reserves for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import PriceSpec
    from .dialects import Usage


class _Listed(Protocol):
    @property
    def price(self) -> Price: ...


class FallbackPrices(Protocol):
    """What a price table falls back on (the shipped table, `gateway.prices`): a protocol here,
    so this module needs nothing of the module that reads the file."""

    @property
    def label(self) -> str: ...

    @property
    def by_name(self) -> Mapping[str, object]: ...

    def find(self, model: str) -> _Listed | None: ...


MICROS_PER_USD = 1_000_000


def usd_to_micros(usd: float) -> int:
    """Whole micro-dollars nearest to `usd` (exact for any float `micros_to_usd` returned)."""
    if not math.isfinite(usd):
        raise ValueError(f"not an amount of money: {usd!r}")
    # repr() is the shortest decimal that reads back as `usd` ("0.15", "1e-07", "-2.5e+16"):
    # its digits as one integer and a power of ten, rounded in integers (no Fraction parse).
    mantissa, _, exponent = repr(float(usd)).partition("e")
    whole, _, decimals = mantissa.partition(".")
    digits = int(whole + decimals)
    shift = 6 + (int(exponent) if exponent else 0) - len(decimals)  # MICROS_PER_USD = 10**6
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        return digits * scale
    return _half_up(digits, scale)


def micros_to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def _half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator (> 0) to the nearest whole number, halves up: floor(n / d + 1/2)
    in integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def _rate(usd_per_million: float) -> Fraction:
    # repr() is the shortest decimal that reads back as the same float: the number the config
    # said (0.15), not the binary float's exact expansion (0.1499999999999999944...).
    return Fraction(repr(float(usd_per_million)))


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens: `input` (prompt tokens not read from or written to a cache), `output`,
    and optionally the cache rates; an unset cache rate means cache tokens cost `input`."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    #: the four rates (input, output, cache read, cache write) as whole numbers over one
    #: denominator, worked out once: a cost is then integer arithmetic, exact as the fractions
    _scaled: tuple[int, int, int, int] = field(init=False, repr=False, compare=False)
    _denominator: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"price {name} must be a finite number >= 0, not {value!r}")
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        rates = [_rate(r) for r in (self.input, self.output, read, write)]
        denominator = math.lcm(*(r.denominator for r in rates))
        scaled = tuple(r.numerator * (denominator // r.denominator) for r in rates)
        object.__setattr__(self, "_scaled", scaled)
        object.__setattr__(self, "_denominator", denominator)

    def _numerator(self, prompt_tokens: int, completion_tokens: int, cache_read_tokens: int,
                   cache_write_tokens: int) -> int:
        """The exact cost in micro-dollars times `_denominator`."""
        if prompt_tokens < 0 or completion_tokens < 0 or cache_read_tokens < 0 or cache_write_tokens < 0:
            counts = (prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens)
            raise ValueError(f"token counts must be >= 0, not {counts}")
        rate_in, rate_out, rate_read, rate_write = self._scaled
        return (prompt_tokens * rate_in + completion_tokens * rate_out
                + cache_read_tokens * rate_read + cache_write_tokens * rate_write)

    def cost_exact(
        self, prompt_tokens: int, completion_tokens: int, cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Fraction:
        """The exact cost in micro-dollars, before rounding."""
        return Fraction(self._numerator(prompt_tokens, completion_tokens, cache_read_tokens,
                                        cache_write_tokens), self._denominator)

    def cost_rounded(self, prompt_tokens: int, completion_tokens: int, cache_read_tokens: int = 0,
                     cache_write_tokens: int = 0) -> int:
        """`cost_exact` to the nearest micro-dollar, halves up: floor(n / d + 1/2), in integers."""
        numerator = self._numerator(prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens)
        return _half_up(numerator, self._denominator)


#: how many model names a price table remembers the price of
_REMEMBERED = 4096


class PriceTable:
    """Model glob -> `Price`; the first pattern that matches (in the given order) wins; a model
    none matches is looked up in `builtin` (the shipped table, `gateway.prices`), if given.

    Matching is `fnmatchcase` (case-sensitive, `*`, `?`, `[...]`), like upstream `models`.
    """

    __slots__ = ("_prices", "builtin", "_found")

    def __init__(self, prices: Mapping[str, Price], builtin: FallbackPrices | None = None) -> None:
        self._prices: tuple[tuple[str, Price], ...] = tuple(prices.items())
        self.builtin = builtin
        #: model -> its price, once looked up (bounded: a client names the models)
        self._found: dict[str, Price | None] = {}

    @classmethod
    def from_config(cls, prices: Mapping[str, PriceSpec],
                    builtin: FallbackPrices | None = None) -> PriceTable:
        """The table of a config's `[prices]`, in the file's order, over `builtin`."""
        return cls({
            pattern: Price(p.input, p.output, p.cache_read, p.cache_write) for pattern, p in prices.items()
        }, builtin)

    def __len__(self) -> int:
        return len(self._prices)

    def items(self) -> tuple[tuple[str, Price], ...]:
        return self._prices

    def usage_cost_micros(self, model: str, usage: Usage) -> int | None:
        """What `usage` cost on `model`; None when unpriced. `usage.prompt_tokens` is the whole
        prompt, its cached parts are charged at the cache rates and the rest at `input`."""
        read = min(usage.cache_read_tokens, usage.prompt_tokens)
        write = min(usage.cache_write_tokens, usage.prompt_tokens - read)
        return self.cost_micros(model, usage.prompt_tokens - read - write, usage.completion_tokens,
                                read, write)

    def price_for(self, model: str) -> Price | None:
        """The model's price: remembered per model name (globs and the built-in table's
        snapshot suffixes are matched once, not per request), up to `_REMEMBERED` names."""
        found = self._found
        if model in found:
            return found[model]
        price = self._look_up(model)
        if len(found) < _REMEMBERED:
            found[model] = price
        return price

    def _look_up(self, model: str) -> Price | None:
        for pattern, price in self._prices:
            if fnmatchcase(model, pattern):
                return price
        listed = self.builtin.find(model) if self.builtin is not None else None
        return None if listed is None else listed.price

    def source_for(self, model: str) -> str:
        """Where `model`'s price comes from: "[prices]", "built-in table (<date>)" or "unpriced"."""
        if any(fnmatchcase(model, pattern) for pattern, _ in self._prices):
            return "[prices]"
        if self.builtin is not None and self.builtin.find(model) is not None:
            return self.builtin.label
        return "unpriced"

    def cost_micros(
        self, model: str, prompt_tokens: int, completion_tokens: int,
        cache_read_tokens: int = 0, cache_write_tokens: int = 0,
    ) -> int | None:
        """What a request cost in whole micro-dollars (nearest, halves up); None when unpriced.

        `prompt_tokens` are the NON-cached input tokens only: tokens read from a cache are
        `cache_read_tokens` and tokens written to one are `cache_write_tokens` (Anthropic's
        `input_tokens`, `cache_read_input_tokens`, `cache_creation_input_tokens`; for OpenAI,
        `prompt_tokens - prompt_tokens_details.cached_tokens` and the cached ones as read).
        """
        price = self.price_for(model)
        if price is None:
            return None
        return price.cost_rounded(prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens)

    def cost(
        self, model: str, prompt_tokens: int, completion_tokens: int,
        cache_read_tokens: int = 0, cache_write_tokens: int = 0,
    ) -> float | None:
        """`cost_micros` in USD (see there for what `prompt_tokens` counts)."""
        micros = self.cost_micros(model, prompt_tokens, completion_tokens, cache_read_tokens,
                                  cache_write_tokens)
        return None if micros is None else micros_to_usd(micros)

    def worst_case_micros(self, model: str, prompt_estimate: int, max_tokens: int) -> int:
        """The most a request can cost, rounded UP; 0 when unpriced (nothing to reserve).

        Every prompt token is charged at the dearer of `input` and `cache_write` (a cache write
        costs more than a plain input token at Anthropic), every allowed output token at
        `output`.
        """
        price = self.price_for(model)
        if price is None:
            return 0
        if prompt_estimate < 0 or max_tokens < 0:
            raise ValueError("token counts must be >= 0")
        rate_in, rate_out, _, rate_write = price._scaled  # over the one denominator: comparable
        numerator = prompt_estimate * max(rate_in, rate_write) + max_tokens * rate_out
        return -(-numerator // price._denominator)  # rounded up

    def worst_case(self, model: str, prompt_estimate: int, max_tokens: int) -> float:
        """`worst_case_micros` in USD."""
        return micros_to_usd(self.worst_case_micros(model, prompt_estimate, max_tokens))
