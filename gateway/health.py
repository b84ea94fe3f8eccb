"""Upstream health for the operator's page (`GET /admin/upstreams`, in `admin_page.py`): each
upstream's circuit breaker as `breaker.py` holds it, and the last failed attempt seen on it
(from the requests' attempts, kept while the admin routes are on).

`breaker_states` is the one place that reads breakers: where breakers are kept (per upstream
today) changes there only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .state import BREAKERS, LIVE
from .store.base import from_epoch, rfc3339
from .upstream.attempt import Attempt

#: attempt outcomes that are no failure of the upstream's
NOT_FAILURES = frozenset({"ok", "skipped", "cancelled", "cut"})


@dataclass(frozen=True, slots=True)
class LastError:
    at: float  # epoch seconds
    model: str
    outcome: str
    status: int | None
    excerpt: str | None  # keys already masked (see upstream/attempt.py)

    def public(self) -> dict[str, Any]:
        return {"at": rfc3339(from_epoch(self.at)), "model": self.model, "outcome": self.outcome,
                "status": self.status, "excerpt": self.excerpt}


class UpstreamHealth:
    """The last failure per upstream. Bounded by the configured upstreams' names."""

    def __init__(self) -> None:
        self.last: dict[str, LastError] = {}

    def note(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            if attempt.outcome not in NOT_FAILURES:
                self.last[attempt.upstream] = LastError(time.time(), attempt.model, attempt.outcome,
                                                        attempt.status, attempt.excerpt)


HEALTH = web.AppKey("upstream_health", UpstreamHealth)


def breaker_states(app: web.Application) -> dict[str, dict[str, Any]]:
    """Upstream name -> its breaker: state, consecutive failures, seconds until a probe."""
    breakers = app[BREAKERS]
    states = {}
    for upstream in app[LIVE].current.config.upstreams:
        breaker = breakers.get(upstream.name, upstream.failures_to_trip, upstream.cooldown_seconds)
        states[upstream.name] = {"state": str(breaker.state), "up": breaker.is_up,
                                 "consecutive_failures": breaker.consecutive_failures,
                                 "retry_in_seconds": round(breaker.retry_in(), 3)}
    return states
