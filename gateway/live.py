"""The config in force and the little that changes while serving: `Snapshot` (what one
request reads of the config, taken once), `LiveConfig` (the app's holder of the current one,
swapped by a reload) and `Runtime` (drain state, requests in flight, streams to stop)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .auth import Authenticator, RuntimeKeys
from .config import Config, UpstreamSpec
from .prices import builtin_prices
from .relay.loop import Stoppable
from .routing import Router
from .spend import PriceTable


@dataclass(slots=True)
class Runtime:
    """Drain state, the API requests in flight, and the streams drain may have to stop."""

    draining: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set when nothing is in flight
    alarms: set[Stoppable] = field(default_factory=set)  # one per relaying or committed stream
    upstreams_reachable: bool = True
    ready_checked: float = float("-inf")  # perf_counter() of the last upstream probe
    ready_probed: tuple[UpstreamSpec, ...] = ()  # the upstreams it probed

    def __post_init__(self) -> None:
        self.idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()

    def stop_streams(self, reason: str) -> int:
        """Drain ran out of time: every stream ends with an error event at its next wait."""
        for alarm in list(self.alarms):
            alarm.stop(reason)
        return len(self.alarms)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a request reads of the config, taken ONCE at its start: a reload swaps the
    whole snapshot for new requests, and requests in flight finish on the one they took."""

    config: Config
    auth: Authenticator
    router: Router
    prices: PriceTable

    @classmethod
    def of(cls, config: Config, runtime: RuntimeKeys | None = None) -> Snapshot:
        """`runtime`: the store's view of issued keys and runtime tenants (one per app).
        Prices: `[prices]` over the shipped price table (read again at each reload)."""
        return cls(config, Authenticator(config.tenants, runtime), Router(config),
                   PriceTable.from_config(config.prices, builtin_prices()))


@dataclass(slots=True)
class LiveConfig:
    """The app's holder of the `Snapshot` in force now (`current`, what `app[LIVE]` is); a
    reload swaps it. A request's `live`/`snapshot` variable is the Snapshot it took."""

    current: Snapshot
