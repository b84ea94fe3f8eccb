"""`RelayClock` tick by tick: no I/O, times are plain numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import UpstreamTimeout
from gateway.relay.timing import Due, RelayClock

INF = float("inf")


def clock(*, heartbeat: float = 0, idle: float = 5, deadline: float = 100, now: float = 0,
          first_byte: float = INF, started: bool = True) -> RelayClock:
    return RelayClock(heartbeat=heartbeat, idle=idle, deadline=deadline, now=now,
                      first_byte=first_byte, started=started)


def test_idle_is_silence_between_complete_lines() -> None:
    c = clock(idle=5)
    assert c.wake() == 5
    c.forwarded(3)  # a complete line at t=3: the idle clock starts again
    assert c.wake() == 8
    assert c.woke(7.9, at_boundary=True) is Due.NOTHING
    with pytest.raises(UpstreamTimeout, match="went silent past idle_timeout_seconds"):
        c.woke(8, at_boundary=True)


def test_bytes_of_a_line_that_never_ends_do_not_reset_idle() -> None:
    c = clock(idle=5)
    c.bytes_arrived()  # a drip: bytes, but no complete line
    c.bytes_arrived()
    assert c.wake() == 5
    with pytest.raises(UpstreamTimeout, match="went silent"):
        c.woke(5, at_boundary=False)


def test_first_byte_deadline_bounds_the_silence_before_the_first_byte() -> None:
    c = clock(idle=5, first_byte=2, started=False)
    assert c.wake() == 2
    assert c.woke(1.5, at_boundary=True) is Due.NOTHING
    with pytest.raises(UpstreamTimeout, match="no first byte from the upstream in time"):
        c.woke(2, at_boundary=True)


def test_idle_bounds_the_first_byte_when_it_is_sooner() -> None:
    c = clock(idle=5, first_byte=30, started=False)
    assert c.wake() == 5
    with pytest.raises(UpstreamTimeout, match="no first byte"):
        c.woke(5, at_boundary=True)


def test_a_first_byte_in_time_switches_to_the_idle_rule() -> None:
    c = clock(idle=5, first_byte=2, started=False)
    c.forwarded(1)
    assert c.started
    assert c.wake() == 6
    with pytest.raises(UpstreamTimeout, match="went silent"):
        c.woke(6, at_boundary=True)


def test_heartbeat_is_due_after_the_last_write_at_a_boundary() -> None:
    c = clock(heartbeat=1, idle=10)
    assert c.wake() == 1
    assert c.woke(0.5, at_boundary=True) is Due.NOTHING  # woke early
    assert c.woke(1, at_boundary=True) is Due.HEARTBEAT
    c.wrote(1)
    assert c.wake() == 2
    c.forwarded(1.5)  # a real line counts as a write too
    assert c.wake() == 2.5


def test_heartbeat_mid_event_waits_for_the_boundary() -> None:
    c = clock(heartbeat=1, idle=10)
    assert c.woke(1, at_boundary=False) is Due.NOTHING  # mid-event: no ping ...
    assert c.wake() == 10  # ... and no wake-up per heartbeat period while blocked
    c.forwarded(3)  # the event ended: heartbeats run again from this write
    assert c.wake() == 4
    assert c.woke(4, at_boundary=True) is Due.HEARTBEAT


def test_heartbeat_off_never_pings() -> None:
    c = clock(heartbeat=0, idle=10)
    assert c.wake() == 10
    assert c.woke(9.99, at_boundary=True) is Due.NOTHING


def test_deadline_ends_the_stream_whatever_arrives() -> None:
    c = clock(heartbeat=1, idle=5, deadline=3)
    c.forwarded(2.5)
    assert c.wake() == 3  # sooner than the next heartbeat (3.5) and idle (7.5)
    with pytest.raises(UpstreamTimeout, match="total_timeout_seconds"):
        c.woke(3, at_boundary=True)


def test_deadline_comes_before_a_due_heartbeat() -> None:
    c = clock(heartbeat=1, idle=5, deadline=1)
    with pytest.raises(UpstreamTimeout, match="total_timeout_seconds"):
        c.woke(1, at_boundary=True)


EVENTS = st.lists(st.tuples(st.sampled_from(["forwarded", "bytes", "wrote"]),
                            st.floats(0, 5)), max_size=20)


@given(EVENTS, st.floats(0.1, 5), st.floats(0.1, 10), st.floats(1, 200), st.booleans())
def test_waking_before_wake_is_never_a_timeout_or_a_ping(
    events: list[tuple[str, float]], heartbeat: float, idle: float, deadline: float, started: bool,
) -> None:
    c = clock(heartbeat=heartbeat, idle=idle, deadline=deadline, first_byte=idle / 2, started=started)
    now = 0.0
    for kind, step in events:
        now += step
        if kind == "forwarded":
            c.forwarded(now)
        elif kind == "bytes":
            c.bytes_arrived()
        else:
            c.wrote(now)
    wake = c.wake()
    assert wake <= deadline
    if now < wake:
        assert c.woke(now, at_boundary=True) is Due.NOTHING
    # at wake itself something is due, or a heartbeat waits for a boundary
    try:
        due = c.woke(max(now, wake), at_boundary=True)
    except UpstreamTimeout:
        return
    assert due is Due.HEARTBEAT
