"""Each upstream's health as the operator's page shows it: up or not (the same rule as
`gateway_upstream_up`), whether it refuses the gateway's credentials, and each target's
breaker (state, consecutive failures, last error and its age, when a probe is due).
Read-only: it changes no breaker (an open breaker past its cooldown still reads "open"
until a request probes it)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .breaker import TargetHealth
from .state import BREAKERS, LIVE, UPSTREAMS


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    name: str
    up: bool
    credentials_refused: bool
    targets: tuple[TargetHealth, ...]


def upstream_health(app: web.Application) -> list[UpstreamHealth]:
    """Every upstream of the config in force, in config order, with its targets' breakers."""
    refused = app[UPSTREAMS].refused_credentials() if UPSTREAMS in app else set()
    breakers = app[BREAKERS] if BREAKERS in app else None
    targets = breakers.health() if breakers is not None else []
    out = []
    for spec in app[LIVE].current.config.upstreams:
        mine = tuple(t for t in targets if t.upstream == spec.name)
        up = spec.name not in refused and (breakers is None or breakers.upstream_up(spec.name))
        out.append(UpstreamHealth(spec.name, up, spec.name in refused, mine))
    return out
