"""Circuit breakers, one per upstream: pure state machines with the clock passed in.

Rules:
- closed: every request is let through; `failures_to_trip` failures in a row (a success in
  between resets the count) open the breaker. `failures_to_trip = 0` never trips.
- open: nothing is let through for `cooldown_seconds` (the caller skips the upstream, or forces
  it when it is the last target left, see `allow(force=True)`).
- half-open: after the cooldown, exactly ONE request is let through as the probe; every other
  request is refused until it reports. Success closes the breaker, failure re-opens it for
  another full cooldown.
- A probe that never reports (its request was cancelled) must not wedge the breaker: its
  holder calls `release(permit)`, and a probe still silent after `cooldown_seconds` expires
  anyway, so the next request becomes the probe.
- Reports are matched to the permit `allow()` handed out: a report from a request let through
  before the breaker last opened is stale (its upstream state is old news) and is ignored, as
  is any report after the first for the same permit.
- `is_up` is True only while closed: the upstream counts as down from the trip until a probe
  succeeds, so `gateway_upstream_up` changes exactly twice per outage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change, for the caller to log and to set `gateway_upstream_up` from."""

    before: BreakerState
    after: BreakerState
    #: "tripped", "cooldown_over", "probe_succeeded", "probe_failed" or "forced_succeeded"
    cause: str

    @property
    def is_up(self) -> bool:
        return self.after is BreakerState.CLOSED


@dataclass(eq=False, slots=True)
class Permit:
    """One request let through by `allow()`; hand it back to exactly one `record_*` or `release`.

    `transition` is the state change that letting it through caused (open -> half-open when it
    is the probe), or None.
    """

    probe: bool
    forced: bool
    epoch: int
    transition: Transition | None = None
    done: bool = field(default=False)


class CircuitBreaker:
    """The breaker of one upstream. Not thread-safe; one event loop owns it."""

    __slots__ = ("failures_to_trip", "cooldown_seconds", "_clock", "_state", "_failures",
                 "_opened_at", "_probe", "_probe_at", "_epoch")

    def __init__(self, failures_to_trip: int, cooldown_seconds: float, clock: Callable[[], float]) -> None:
        if failures_to_trip < 0 or cooldown_seconds < 0:
            raise ValueError("failures_to_trip and cooldown_seconds must be >= 0")
        self.failures_to_trip = failures_to_trip
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive failures while closed
        self._opened_at = 0.0
        self._probe: Permit | None = None  # the probe in flight while half-open
        self._probe_at = 0.0
        # Bumped every time the breaker opens: permits from an earlier epoch are stale.
        self._epoch = 0

    @property
    def state(self) -> BreakerState:
        """The state as of the last call; an open breaker past its cooldown turns half-open on
        the next `allow()`, not by itself."""
        return self._state

    @property
    def is_up(self) -> bool:
        return self._state is BreakerState.CLOSED

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_seconds - self._clock())

    def allow(self, *, force: bool = False) -> Permit | None:
        """A permit to send one request to this upstream, or None: skip it.

        `force=True` lets a request through whatever the state (the route's last target is
        tried even when its breaker is open): it is not the probe, its failure changes nothing
        and its success closes the breaker, since the upstream evidently works.
        """
        now = self._clock()
        transition = None
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.cooldown_seconds:
            transition = self._move(BreakerState.HALF_OPEN, "cooldown_over")
        if self._state is BreakerState.HALF_OPEN:
            if self._probe is not None and now - self._probe_at >= self.cooldown_seconds:
                self._probe = None  # a probe silent for a whole cooldown: expire it
            if self._probe is None:
                self._probe = Permit(probe=True, forced=False, epoch=self._epoch, transition=transition)
                self._probe_at = now
                return self._probe
        if self._state is BreakerState.CLOSED or force:
            return Permit(probe=False, forced=force, epoch=self._epoch)
        return None

    def record_success(self, permit: Permit) -> Transition | None:
        """The request answered well: count it, close the breaker if it was the probe."""
        if not self._take(permit):
            return None
        if self._state is BreakerState.CLOSED:
            self._failures = 0
            return None
        if permit is self._probe or permit.forced:
            self._probe = None
            self._failures = 0
            return self._move(BreakerState.CLOSED, "probe_succeeded" if permit.probe else "forced_succeeded")
        return None

    def record_failure(self, permit: Permit) -> Transition | None:
        """The request failed on the upstream's side: count it, open the breaker if due."""
        if not self._take(permit):
            return None
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            if self.failures_to_trip and self._failures >= self.failures_to_trip:
                return self._open("tripped")
            return None
        if permit is self._probe:
            return self._open("probe_failed")
        return None  # a forced request failing while open: the cooldown stands

    def release(self, permit: Permit) -> None:
        """The request ended without a verdict (cancelled, or failed on the client's side).

        A released probe frees the half-open slot at once, so the next request probes.
        Releasing a permit that already reported does nothing.
        """
        if self._take(permit) and permit is self._probe:
            self._probe = None

    def _take(self, permit: Permit) -> bool:
        """Mark `permit` used; True when its report still counts (first use, current epoch)."""
        if permit.done:
            return False
        permit.done = True
        return permit.epoch == self._epoch

    def _open(self, cause: str) -> Transition:
        self._opened_at = self._clock()
        self._probe = None
        self._failures = 0
        self._epoch += 1
        return self._move(BreakerState.OPEN, cause)

    def _move(self, state: BreakerState, cause: str) -> Transition:
        transition = Transition(self._state, state, cause)
        self._state = state
        return transition


class Breakers:
    """The breakers of all upstreams, by upstream name; lives on the app, survives reloads.

    An upstream keeps its breaker (and its state) across a reload that leaves its settings
    alone; changed settings start a fresh, closed breaker.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, upstream: str, failures_to_trip: int, cooldown_seconds: float) -> CircuitBreaker:
        breaker = self._breakers.get(upstream)
        if (
            breaker is None
            or breaker.failures_to_trip != failures_to_trip
            or breaker.cooldown_seconds != cooldown_seconds
        ):
            breaker = CircuitBreaker(failures_to_trip, cooldown_seconds, self._clock)
            self._breakers[upstream] = breaker
        return breaker

    def retain(self, upstreams: Iterable[str]) -> None:
        """Forget the breakers of upstreams no longer configured (after a reload)."""
        keep = set(upstreams)
        for name in [name for name in self._breakers if name not in keep]:
            del self._breakers[name]

    def up(self) -> dict[str, bool]:
        """Upstream name -> is_up, for `gateway_upstream_up`."""
        return {name: breaker.is_up for name, breaker in self._breakers.items()}
