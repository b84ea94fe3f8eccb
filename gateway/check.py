"""`llm-gateway check-config`: what a valid config yields, as readable tables (no I/O here:
the CLI loads the config and prints the text)."""

from __future__ import annotations

from collections.abc import Sequence

from .config import Config, UpstreamSpec
from .models import is_glob


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, a rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _listing(upstream: UpstreamSpec) -> str:
    """Where `/v1/models` takes this upstream's names from."""
    globs = [p for p in upstream.models if is_glob(p)]
    if not globs:
        return "its concrete names"
    return (f"the provider's list matching {', '.join(globs)} "
            f"(GET /models every {upstream.models_refresh_seconds:g}s)")


def describe(config: Config) -> str:
    """Tenants, routes (model -> targets, strategy) and prices of a valid config."""
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
    return "\n\n".join(parts)
