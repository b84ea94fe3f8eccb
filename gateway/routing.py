"""Routing: (tenant, model) -> a `Plan`: the ordered targets (upstream, model name) to try.

Rules:
- `[[routes]]` first, in config order: a route whose `model` (a name or a glob) matches
  gives its targets, `upstream:model` (or `upstream`, keeping the client's model name).
- Else the first upstream whose `models` globs match, then its `fallbacks`, all with the
  client's model name (an implicit one-upstream route).
- A tenant's allow-list is checked against the name the client sent.
- Every target serves every chat route, whatever its dialect: the chat handlers translate.
  An API with no translation (`/v1/responses`, ...) asks for one dialect: a model routed only
  to upstreams of the other one is refused with a message that says so.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from typing import TypeVar

from .config import Config, RouteSpec, Tenant, UpstreamSpec
from .errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class Target:
    upstream: UpstreamSpec
    model: str  # the model name this upstream is asked for
    path: str = ""  # the upstream API path, when not the dialect's chat path ("/embeddings")


@dataclass(frozen=True, slots=True)
class Plan:
    name: str  # the route's model name or glob (for logs and metric labels)
    targets: tuple[Target, ...]
    strategy: str = "fallback"  # "fallback" | "balance"
    resume_midstream: bool = False
    overflow: Plan | None = None  # where a prompt too long for these targets goes

    @property
    def models(self) -> tuple[str, ...]:
        """Every model this plan may be charged at, in order: its targets', then those of its
        `on_context_overflow` plans (part of the plan: its worst case is priced at them too)."""
        models: list[str] = []
        plan: Plan | None = self
        while plan is not None:  # finite: `_route_plan` never revisits a route
            models.extend(t.model for t in plan.targets)
            plan = plan.overflow
        return tuple(models)


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


_K = TypeVar("_K")
_V = TypeVar("_V")
#: answers remembered per Router (one config): cleared when full, so a client sending endless
#: model names costs a re-match now and then, never memory
CACHED_ANSWERS = 4096


class Router:
    """Matching is glob work per target and pattern: its answers are kept, per (tenant, model)
    and (model, dialect), for the life of this config (a reload builds a new Router)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._routes = {route.model: route for route in config.routes}
        self._allowed: dict[tuple[str, str], bool] = {}
        #: a plan, or, when there is none, the dialects the model IS routed to (none at all:
        #: empty), for the refusal's message
        self._plans: dict[tuple[str, str | None], Plan | frozenset[str]] = {}

    def route(self, tenant: Tenant, model: str, dialect: str | None = None, *, api: str = "") -> Plan:
        """`dialect`: only targets of that upstream dialect (an API route that has no
        translation, e.g. `/v1/responses`, named by `api` in a refusal); None for the chat
        routes, which translate."""
        allowed = self._allowed.get((tenant.name, model))
        if allowed is None:
            allowed = _remember(self._allowed, (tenant.name, model), tenant.allows(model))
        if not allowed:
            raise ModelNotFound(f"model {model[:200]!r} is not available to this key")
        key = (model, dialect)
        plan = self._plans[key] if key in self._plans else _remember(
            self._plans, key, self._dialect_plan(model, dialect))
        if isinstance(plan, Plan):
            return plan
        if not plan:
            raise ModelNotFound(f"model {model[:200]!r} is not routed to any upstream")
        raise ModelNotFound(f"model {model[:200]!r} is served only by {' and '.join(sorted(plan))}-dialect "
                            f"upstreams; {api or 'this API'} is not translated")

    def _dialect_plan(self, model: str, dialect: str | None) -> Plan | frozenset[str]:
        plan = self._plan(model, dialect)
        if plan is not None and dialect is not None:
            kept = tuple(t for t in plan.targets if t.upstream.dialect == dialect)
            plan = replace(plan, targets=kept) if kept else None
        if plan is not None and plan.targets:
            return plan
        if dialect is None:
            return frozenset()
        # No target of this dialect: which dialects would have served it, had it translated?
        every = self._plan(model, None)
        return frozenset(t.upstream.dialect for t in every.targets) - {dialect} if every else frozenset()

    def _plan(self, model: str, dialect: str | None) -> Plan | None:
        for route in self._config.routes:
            if route.matches(model):
                return self._route_plan(route, model, set())
        for upstream in self._config.upstreams:
            if upstream.serves(model) and dialect in (None, upstream.dialect):
                chain = [upstream]
                for name in upstream.fallbacks:
                    fallback = self._config.upstream(name)
                    if fallback not in chain:
                        chain.append(fallback)
                glob = next(p for p in upstream.models if fnmatch.fnmatchcase(model, p))
                return Plan(glob, tuple(Target(u, model) for u in chain))
        return None

    def _route_plan(self, route: RouteSpec, model: str, seen: set[str]) -> Plan:
        targets = []
        for target in route.targets:
            name, _, renamed = target.partition(":")
            targets.append(Target(self._config.upstream(name), renamed or model))
        overflow = None
        if route.on_context_overflow and route.on_context_overflow not in seen:
            nxt = self._routes[route.on_context_overflow]
            overflow = self._route_plan(nxt, nxt.model if not _is_glob(nxt.model) else model,
                                        seen | {route.model})
        return Plan(route.model, tuple(targets), route.strategy, route.resume_midstream, overflow)

    def models_for(self, tenant: Tenant) -> list[tuple[str, str]]:
        """(model, owner) pairs this tenant may use, for `GET /v1/models`: concrete names of
        routes and upstreams only; a glob routes, it is never listed."""
        seen: dict[str, str] = {}
        for route in self._config.routes:
            if not _is_glob(route.model) and tenant.allows(route.model):
                seen.setdefault(route.model, "gateway")
        for upstream in self._config.upstreams:
            for name in upstream.models:
                if not _is_glob(name) and tenant.allows(name):
                    seen.setdefault(name, upstream.name)
        return sorted(seen.items())


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(cache) >= CACHED_ANSWERS:
        cache.clear()
    cache[key] = value
    return value
