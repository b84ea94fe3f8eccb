"""CircuitBreaker and Breakers, tick by tick on an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.breaker import Breakers, BreakerState, CircuitBreaker, Permit, Transition

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def permit(breaker: CircuitBreaker, *, force: bool = False) -> Permit:
    p = breaker.allow(force=force)
    assert p is not None
    return p


def trip(breaker: CircuitBreaker) -> Transition | None:
    last = None
    for _ in range(breaker.failures_to_trip):
        last = breaker.record_failure(permit(breaker))
    return last


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_closed_lets_everything_through_and_trips_on_the_nth_consecutive_failure(clock: Clock) -> None:
    b = CircuitBreaker(3, 30, clock)
    assert b.record_failure(permit(b)) is None
    assert b.record_failure(permit(b)) is None
    assert (b.state, b.is_up, b.consecutive_failures) == (CLOSED, True, 2)
    assert b.record_failure(permit(b)) == Transition(CLOSED, OPEN, "tripped")
    assert (b.state, b.is_up) == (OPEN, False)
    assert b.allow() is None


def test_a_success_resets_the_consecutive_count(clock: Clock) -> None:
    b = CircuitBreaker(3, 30, clock)
    b.record_failure(permit(b))
    b.record_failure(permit(b))
    assert b.record_success(permit(b)) is None
    assert b.consecutive_failures == 0
    b.record_failure(permit(b))
    b.record_failure(permit(b))
    assert b.state == CLOSED
    assert b.record_failure(permit(b)) == Transition(CLOSED, OPEN, "tripped")


def test_zero_failures_to_trip_never_trips(clock: Clock) -> None:
    b = CircuitBreaker(0, 30, clock)
    for _ in range(1000):
        assert b.record_failure(permit(b)) is None
    assert (b.state, b.is_up) == (CLOSED, True)


def test_open_refuses_until_the_cooldown_then_exactly_one_probe(clock: Clock) -> None:
    b = CircuitBreaker(1, 30, clock)
    trip(b)
    assert b.retry_in() == 30
    clock.now += 29.999
    assert b.allow() is None
    assert b.retry_in() == pytest.approx(0.001)
    clock.now += 0.001
    probe = permit(b)
    assert probe.probe is True
    assert probe.transition == Transition(OPEN, HALF_OPEN, "cooldown_over")
    assert (b.state, b.is_up) == (HALF_OPEN, False)
    # every other request is refused while the probe is out, however long it takes (< cooldown)
    for _ in range(5):
        clock.now += 5
        assert b.allow() is None
    assert b.record_success(probe) == Transition(HALF_OPEN, CLOSED, "probe_succeeded")
    assert (b.state, b.is_up) == (CLOSED, True)
    second = permit(b)
    assert (second.probe, second.transition) == (False, None)


def test_a_failed_probe_reopens_for_another_full_cooldown(clock: Clock) -> None:
    b = CircuitBreaker(2, 10, clock)
    trip(b)
    clock.now += 10
    probe = permit(b)
    clock.now += 3
    assert b.record_failure(probe) == Transition(HALF_OPEN, OPEN, "probe_failed")
    assert b.retry_in() == 10  # counted from the probe's failure, not the first trip
    clock.now += 9.5
    assert b.allow() is None
    clock.now += 0.5
    again = permit(b)
    assert again.probe and again.transition == Transition(OPEN, HALF_OPEN, "cooldown_over")


def test_a_released_probe_frees_the_slot_at_once(clock: Clock) -> None:
    b = CircuitBreaker(1, 30, clock)
    trip(b)
    clock.now += 30
    probe = permit(b)
    assert b.allow() is None
    b.release(probe)  # cancelled: no verdict
    assert b.state == HALF_OPEN
    nxt = permit(b)
    assert (nxt.probe, nxt.transition) == (True, None)
    # the released probe reporting late changes nothing
    assert b.record_success(probe) is None
    assert b.state == HALF_OPEN
    assert b.record_success(nxt) == Transition(HALF_OPEN, CLOSED, "probe_succeeded")


def test_a_probe_that_never_reports_expires_after_a_cooldown(clock: Clock) -> None:
    b = CircuitBreaker(1, 30, clock)
    trip(b)
    clock.now += 30
    lost = permit(b)
    clock.now += 29.9
    assert b.allow() is None
    clock.now += 0.1
    fresh = permit(b)
    assert fresh.probe and fresh is not lost
    assert b.record_failure(lost) is None  # the expired probe no longer speaks for the upstream
    assert b.state == HALF_OPEN
    assert b.record_failure(fresh) == Transition(HALF_OPEN, OPEN, "probe_failed")


def test_reports_from_before_the_trip_are_stale(clock: Clock) -> None:
    b = CircuitBreaker(2, 30, clock)
    slow_ok, slow_bad, slowest_bad = permit(b), permit(b), permit(b)
    trip(b)
    assert b.record_success(slow_ok) is None  # a success from before the trip does not close it
    assert b.record_failure(slow_bad) is None
    assert (b.state, b.retry_in()) == (OPEN, 30)  # nor does a failure extend the cooldown
    clock.now += 30
    assert b.record_success(permit(b)) == Transition(HALF_OPEN, CLOSED, "probe_succeeded")
    # closed again: a failure reported by a request from before the trip does not count
    assert b.record_failure(slowest_bad) is None
    assert b.consecutive_failures == 0


def test_each_permit_reports_once(clock: Clock) -> None:
    b = CircuitBreaker(2, 30, clock)
    p = permit(b)
    b.record_failure(p)
    assert b.record_failure(p) is None
    assert (b.state, b.consecutive_failures) == (CLOSED, 1)
    b.release(p)
    assert b.consecutive_failures == 1


def test_forced_request_while_open_closes_on_success_and_changes_nothing_on_failure(clock: Clock) -> None:
    b = CircuitBreaker(1, 30, clock)
    trip(b)
    clock.now += 10
    forced = permit(b, force=True)
    assert (forced.probe, forced.forced) == (False, True)
    assert b.record_failure(forced) is None
    assert (b.state, b.retry_in()) == (OPEN, 20)
    forced = permit(b, force=True)
    assert b.record_success(forced) == Transition(OPEN, CLOSED, "forced_succeeded")
    assert b.is_up


def test_forced_request_beside_an_outstanding_probe(clock: Clock) -> None:
    b = CircuitBreaker(1, 30, clock)
    trip(b)
    clock.now += 30
    probe = permit(b)
    forced = permit(b, force=True)
    assert not forced.probe
    assert b.record_failure(forced) is None
    assert b.state == HALF_OPEN
    assert b.record_success(probe) == Transition(HALF_OPEN, CLOSED, "probe_succeeded")


def test_zero_cooldown_probes_on_the_next_request(clock: Clock) -> None:
    b = CircuitBreaker(1, 0, clock)
    trip(b)
    assert b.state == OPEN
    probe = permit(b)
    assert probe.probe and b.state == HALF_OPEN


def test_invalid_settings_are_refused(clock: Clock) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(-1, 30, clock)
    with pytest.raises(ValueError):
        CircuitBreaker(1, -0.5, clock)


def test_breakers_registry_keeps_state_per_upstream_and_resets_on_new_settings(clock: Clock) -> None:
    reg = Breakers(clock)
    a = reg.get("a", "m", 1, 30)
    trip(a)
    assert reg.get("a", "m", 1, 30) is a
    assert reg.get("b", "m", 1, 30).is_up
    assert reg.up() == {"a": False, "b": True}
    fresh = reg.get("a", "m", 2, 30)  # settings changed by a reload
    assert fresh is not a and fresh.state == CLOSED
    reg.retain({"a": (2, 30)})
    assert reg.up() == {"a": True}


# Model check: random sequences of operations against a tiny reference of the rules.
OPS = st.lists(
    st.tuples(st.sampled_from(["allow", "force", "ok", "fail", "release", "tick"]),
              st.integers(min_value=0, max_value=7)),
    max_size=60,
)


@given(OPS)
def test_invariants_hold_under_any_sequence(ops: list[tuple[str, int]]) -> None:
    clock = Clock()
    b = CircuitBreaker(3, 10, clock)
    held: list[Permit] = []
    for op, n in ops:
        if op == "tick":
            clock.now += n * 2
        elif op in ("allow", "force"):
            was = b.state
            p = b.allow(force=op == "force")
            # refused only while open or half-open with the probe out
            if p is None:
                assert was != CLOSED and op == "allow"
            else:
                held.append(p)
        elif held:
            p = held.pop(n % len(held))
            if op == "release":
                b.release(p)
                t = None
            else:
                t = b.record_success(p) if op == "ok" else b.record_failure(p)
            if t is not None:
                assert t.before != t.after
                assert t.is_up == (t.after == CLOSED)
        # the up flag is the state, and at most one live probe exists
        assert b.is_up == (b.state == CLOSED)
        live_probes = [p for p in held if p.probe and not p.done and p.epoch == b._epoch and p is b._probe]
        assert len(live_probes) <= 1
        if b.state != HALF_OPEN:
            assert b._probe is None
