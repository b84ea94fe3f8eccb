"""Circuit breakers, one per target (upstream, model): pure state machines with the clock
passed in, and the registry that keeps them (`Breakers`).

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
- `is_up` is True only while closed: the target counts as down from the trip until a probe
  succeeds, so its gauge changes exactly twice per outage.
- A stream's verdict comes when it ends, not when it opens: `answered(permit)` at its first
  byte closes a breaker whose probe (or forced request) it is, and the permit stays out for
  the verdict (`record_success` at a complete answer, `record_failure` at a cut).
- Each failure's detail is kept as `last_error` (for the operator's page).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

#: breakers kept at most (a route that keeps the client's model name under a glob makes one
#: per name a client sends): past it, the oldest healthy one is forgotten first
MAX_BREAKERS = 2048


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
    """The breaker of one target. Not thread-safe; one event loop owns it."""

    __slots__ = ("failures_to_trip", "cooldown_seconds", "_clock", "_state", "_failures",
                 "_opened_at", "_probe", "_probe_at", "_epoch", "last_error", "last_error_at")

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
        #: the detail of the last failure that counted, and when (the clock's time)
        self.last_error: str | None = None
        self.last_error_at: float | None = None

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

    def answered(self, permit: Permit) -> Transition | None:
        """A stream's first byte: a probe's (or forced request's) good news closes the breaker
        now; the permit stays out for the stream's verdict (success, failure or release)."""
        if permit.done or permit.epoch != self._epoch or self._state is BreakerState.CLOSED:
            return None
        if permit is self._probe or permit.forced:
            self._probe = None
            self._failures = 0
            return self._move(BreakerState.CLOSED, "probe_succeeded" if permit.probe else "forced_succeeded")
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

    def record_failure(self, permit: Permit, error: str | None = None) -> Transition | None:
        """The request failed on the upstream's side: count it, open the breaker if due."""
        if not self._take(permit):
            return None
        if error is not None:
            self.last_error, self.last_error_at = error, self._clock()
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


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One target's breaker, as the operator's page shows it."""

    upstream: str
    model: str
    state: BreakerState
    consecutive_failures: int
    last_error: str | None
    #: seconds since the last counted failure, None when there was none
    last_error_age_seconds: float | None
    #: seconds until an open breaker lets its probe through
    retry_in_seconds: float


class Breakers:
    """The breakers of all targets, by (upstream name, model); lives on the app, survives
    reloads. A target keeps its breaker (and its state) across a reload that leaves its
    upstream's settings alone; changed settings start it afresh, closed. At most
    `MAX_BREAKERS` are kept (the oldest closed one with no failures goes first)."""

    def __init__(self, clock: Callable[[], float], max_breakers: int = MAX_BREAKERS) -> None:
        self._clock = clock
        self._max = max_breakers
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def get(self, upstream: str, model: str, failures_to_trip: int,
            cooldown_seconds: float) -> CircuitBreaker:
        key = (upstream, model)
        breaker = self._breakers.get(key)
        if (
            breaker is None
            or breaker.failures_to_trip != failures_to_trip
            or breaker.cooldown_seconds != cooldown_seconds
        ):
            if breaker is None and len(self._breakers) >= self._max:
                self._forget_one()
            breaker = CircuitBreaker(failures_to_trip, cooldown_seconds, self._clock)
            self._breakers[key] = breaker
        return breaker

    def find(self, upstream: str, model: str) -> CircuitBreaker | None:
        return self._breakers.get((upstream, model))

    def is_open(self, upstream: str, model: str) -> bool:
        """The target's breaker is not closed (it is skipped, or waits for its probe)."""
        breaker = self._breakers.get((upstream, model))
        return breaker is not None and not breaker.is_up

    def retain(self, settings: dict[str, tuple[int, float]]) -> None:
        """After a reload: `settings` is upstream name -> (failures_to_trip, cooldown_seconds)
        of the new config. A removed upstream's breakers are forgotten, and so are those of an
        upstream whose settings changed (its targets start closed)."""
        for key, breaker in list(self._breakers.items()):
            wanted = settings.get(key[0])
            if wanted != (breaker.failures_to_trip, breaker.cooldown_seconds):
                del self._breakers[key]

    def of(self, upstream: str) -> list[tuple[str, CircuitBreaker]]:
        """(model, breaker) of every target of `upstream` kept here."""
        return [(model, b) for (name, model), b in self._breakers.items() if name == upstream]

    def upstream_up(self, upstream: str) -> bool:
        """False only while every target of `upstream` kept here is not closed (one model's
        outage does not take the upstream down); an upstream with none is up."""
        breakers = self.of(upstream)
        return not breakers or any(b.is_up for _, b in breakers)

    def up(self) -> dict[str, bool]:
        """Upstream name -> `upstream_up`, for every upstream that has a breaker here."""
        return {name: self.upstream_up(name) for name in dict.fromkeys(n for n, _ in self._breakers)}

    def health(self) -> list[TargetHealth]:
        """Every target's breaker, by upstream then model (for the operator's page)."""
        now = self._clock()
        out = []
        for (upstream, model), b in sorted(self._breakers.items(), key=lambda item: item[0]):
            age = None if b.last_error_at is None else max(0.0, now - b.last_error_at)
            out.append(TargetHealth(upstream, model, b.state, b.consecutive_failures, b.last_error,
                                    age, b.retry_in()))
        return out

    def _forget_one(self) -> None:
        victim = next((key for key, b in self._breakers.items()
                       if b.is_up and not b.consecutive_failures), None)
        if victim is None:
            victim = next(iter(self._breakers))
        del self._breakers[victim]
