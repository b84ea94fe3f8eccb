"""The price table that ships with the package (`prices.toml`: dated, each price with where it
was read), and where a model's price comes from.

Rules:
- `[prices]` in the config comes first (its globs in file order, first match wins); the
  built-in table prices what none of them matches.
- The built-in table matches a model's exact name, else its name without a dated snapshot
  suffix (`gpt-4o-mini-2024-07-18`, `claude-haiku-4-5-20251001`) or `-latest`: a snapshot
  costs what its family costs unless the table lists the snapshot itself.
- A tenant with a budget is refused a model that has no price (403 `model_unpriced`): a
  budget cannot be enforced on a model that costs nothing in the books.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib.resources import files
from typing import Any

from .errors import ModelUnpriced
from .spend import Price, PriceTable

#: a snapshot's suffix: -2024-07-18, -20251001, -latest
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@dataclass(frozen=True, slots=True)
class Listed:
    """One row of the built-in table."""

    price: Price
    provider: str
    source: str
    confirmed: bool


@dataclass(frozen=True, slots=True)
class BuiltinPrices:
    taken: date
    sources: Mapping[str, str]  # provider -> its pricing page
    by_name: Mapping[str, Listed]

    @property
    def label(self) -> str:
        return f"built-in table ({self.taken.isoformat()})"

    def find(self, model: str) -> Listed | None:
        listed = self.by_name.get(model)
        if listed is None:
            family = _SNAPSHOT.sub("", model)
            if family != model:
                listed = self.by_name.get(family)
        return listed


def builtin_prices(text: str | None = None) -> BuiltinPrices:
    """The shipped table (or `text` in its format); a malformed table raises ValueError."""
    if text is None:
        text = files("gateway").joinpath("prices.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    taken = raw.get("taken")
    if not isinstance(taken, date):
        raise ValueError("prices.toml: `taken` must be a date")
    sources = raw.get("sources")
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise ValueError("prices.toml: `sources` must map providers to URLs")
    by_name: dict[str, Listed] = {}
    for i, row in enumerate(raw.get("models", [])):
        listed = _listed(row, f"prices.toml: models[{i}]")
        for name in row["names"]:
            if name in by_name:
                raise ValueError(f"prices.toml: {name!r} is listed twice")
            by_name[name] = listed
    return BuiltinPrices(taken, dict(sources), by_name)


def _listed(row: Any, where: str) -> Listed:
    if not isinstance(row, dict) or not isinstance(row.get("names"), list) or not row["names"]:
        raise ValueError(f"{where}: needs `names`")
    rates = {}
    for key in ("input", "output", "cache_read", "cache_write"):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{where}.{key}: not a number")
        rates[key] = None if value is None else float(value)
    if rates["input"] is None or rates["output"] is None:
        raise ValueError(f"{where}: needs `input` and `output`")
    price = Price(rates["input"], rates["output"], rates["cache_read"], rates["cache_write"])
    return Listed(price, str(row.get("provider", "")), str(row.get("source", "")),
                  row.get("confirmed") is True)


def require_prices(prices: PriceTable | None, models: Iterable[str]) -> None:
    """Raise `ModelUnpriced` when any of `models` (a request's targets) has no price."""
    unpriced = sorted({m for m in models if prices is None or prices.price_for(m) is None})
    if unpriced:
        names = ", ".join(repr(m[:200]) for m in unpriced)
        raise ModelUnpriced(
            f"model {names} has no price (neither [prices] nor the built-in table), and this key "
            "has a spend budget that cannot be enforced on it")
