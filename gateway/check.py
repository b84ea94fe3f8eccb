"""`llm-gateway check-config`: what a valid config yields, as readable tables (no I/O here:
the CLI loads the config and prints the text)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from .config import Config, Tenant, UpstreamSpec
from .spend import PriceTable


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, a rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def _listing(upstream: UpstreamSpec) -> str:
    """Where `/v1/models` takes this upstream's names from."""
    globs = [p for p in upstream.models if _is_glob(p)]
    if not globs:
        return "its concrete names"
    return (f"the provider's list matching {', '.join(globs)} "
            f"(GET /models every {upstream.models_refresh_seconds:g}s)")


def route_targets(config: Config) -> list[tuple[str, str, str]]:
    """(route, upstream, model) for every target of every route, upstream globs included
    (their model is the glob: the client's name goes through)."""
    found = []
    for route in config.routes:
        for target in route.targets:
            upstream, _, renamed = target.partition(":")
            found.append((route.model, upstream, renamed or route.model))
    for u in config.upstreams:
        found += [(pattern, u.name, pattern) for pattern in u.models]
    return found


def _price_of(prices: PriceTable, model: str) -> tuple[list[str], str]:
    """A target's price cells and where it comes from; a glob is priced only by a [prices]
    pattern that covers it whole, else per model name."""
    if _is_glob(model):
        for pattern, price in prices.items():
            if fnmatch.fnmatchcase(model, pattern):
                return _cells(price), "[prices]"
        listed = 0 if prices.builtin is None else sum(
            1 for name in prices.builtin.by_name if fnmatch.fnmatchcase(name, model))
        label = prices.builtin.label if prices.builtin is not None else "built-in table"
        return ["-"] * 4, f"per model; {listed} names listed in the {label}"
    found = prices.price_for(model)
    return (["-"] * 4 if found is None else _cells(found)), prices.source_for(model)


def _cells(price: object) -> list[str]:
    return [_money(getattr(price, k)) for k in ("input", "output", "cache_read", "cache_write")]


def _reaches(tenant: Tenant, name: str) -> bool:
    return tenant.allows(name) or any(fnmatch.fnmatchcase(p, name) for p in tenant.models)


def price_warnings(config: Config, prices: PriceTable) -> list[str]:
    """One line per (tenant with a budget, route target) it can reach that has no price: such
    a request is refused (403 model_unpriced), since the budget could not count it."""
    warnings = []
    for tenant in config.tenants:
        if tenant.budget_usd is None:
            continue
        for route, upstream, model in route_targets(config):
            if not _reaches(tenant, route):
                continue
            cells, source = _price_of(prices, model)
            if source == "unpriced":
                warnings.append(f"tenant {tenant.name!r} has a budget and can reach {upstream}:{model} "
                                f"(route {route!r}), which has no price: it is refused (403 model_unpriced); "
                                "add it under [prices]")
            elif source.startswith("per model"):
                warnings.append(f"tenant {tenant.name!r} has a budget and can reach {upstream}:{model} "
                                f"(route {route!r}): a name it matches that neither [prices] nor the "
                                "built-in table prices is refused (403 model_unpriced)")
    return warnings


def describe(config: Config, table_of_prices: PriceTable | None = None) -> str:
    """Tenants, routes (model -> targets, strategy) and prices of a valid config; with
    `prices` (its [prices] over the built-in table), each route target's price and source."""
    tenants = [
        (t.name, str(t.requests_per_minute), str(t.tokens_per_minute), str(t.priority),
         ",".join(t.models), "-" if t.budget_usd is None else f"${t.budget_usd:g}/{t.budget_period}",
         str(len(t.keys)))
        for t in config.tenants
    ]
    routes = [
        (r.model, ", ".join(r.targets), r.strategy, r.on_context_overflow or "-",
         "yes" if r.resume_midstream else "no")
        for r in config.routes
    ]
    # Upstream globs route too (after [[routes]]): the upstream, then its fallbacks, in order.
    routes += [
        (pattern, ", ".join((u.name, *u.fallbacks)), "fallback", "-", "no")
        for u in config.upstreams for pattern in u.models
    ]
    upstreams = [(u.name, u.dialect, u.base_url, u.api_key_env or "-", _listing(u))
                 for u in config.upstreams]
    prices = [
        (pattern, _money(p.input), _money(p.output), _money(p.cache_read), _money(p.cache_write))
        for pattern, p in config.prices.items()
    ]
    parts = [
        "tenants\n" + table(("name", "req/min", "tokens/min", "priority", "models", "budget", "keys"),
                            tenants),
        "routes (first match wins)\n" + table(
            ("model", "targets", "strategy", "on_context_overflow", "resume_midstream"), routes),
        "upstreams\n" + table(("name", "dialect", "base_url", "api_key_env", "/v1/models lists"),
                               upstreams),
        "prices (USD per 1M tokens, first match wins)\n" + (table(
            ("model", "input", "output", "cache_read", "cache_write"), prices) if prices else "(none)"),
    ]
    if table_of_prices is not None:
        targets = [(route, f"{upstream}:{model}", *cells, source)
                   for route, upstream, model in route_targets(config)
                   for cells, source in [_price_of(table_of_prices, model)]]
        parts.append("route targets' prices (USD per 1M tokens)\n" + table(
            ("route", "target", "input", "output", "cache_read", "cache_write", "source"), targets))
    return "\n\n".join(parts)
