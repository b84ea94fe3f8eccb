"""Routing: (tenant, model, dialect) -> the ordered upstreams to try (primary, then fallbacks)."""

from __future__ import annotations

import fnmatch

from .config import Config, Tenant, UpstreamSpec
from .errors import ModelNotFound


class Router:
    def __init__(self, config: Config) -> None:
        self._config = config

    def route(self, tenant: Tenant, model: str, dialect: str | None) -> list[UpstreamSpec]:
        """The first upstream (in config order) whose globs match, then its fallbacks in order.

        `dialect` is the route's dialect for pass-through routes (bodies are relayed as
        they are, so an upstream of the other dialect can't serve them and is skipped);
        None for routes that build the upstream request per dialect.
        """
        if not tenant.allows(model):
            raise ModelNotFound(f"model {model!r} is not available to this key")
        for upstream in self._config.upstreams:
            if upstream.serves(model) and dialect in (None, upstream.dialect):
                chain = [upstream]
                for name in upstream.fallbacks:
                    fallback = self._config.upstream(name)
                    if dialect in (None, fallback.dialect) and fallback not in chain:
                        chain.append(fallback)
                return chain
        raise ModelNotFound(f"model {model!r} is not routed to any upstream")

    def models_for(self, tenant: Tenant) -> list[tuple[str, str]]:
        """(model, upstream name) pairs this tenant may use, for `GET /v1/models`.

        Upstreams declare globs, so a listed id may be a pattern (`gpt-*`); where the
        tenant's own allow-list is narrower (`gpt-4o*` within `gpt-*`) its pattern is listed.
        """
        seen: dict[str, str] = {}
        for upstream in self._config.upstreams:
            for pattern in upstream.models:
                if tenant.allows(pattern):
                    seen.setdefault(pattern, upstream.name)
                for own in tenant.models:
                    if own != pattern and fnmatch.fnmatchcase(own, pattern):
                        seen.setdefault(own, upstream.name)
        return sorted(seen.items())
