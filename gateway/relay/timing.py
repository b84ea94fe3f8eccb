"""The relay's clock rules, with no I/O: when to wake, when to ping, when to give up.

Times are the event loop's clock (the relay's one timer runs on it); durations that are
logged or measured come from `time.perf_counter` elsewhere.

Rules:
- `idle` is the longest silence between COMPLETE upstream lines: bytes of a line that never
  ends (a drip of one byte a second) do not reset it.
- Before the first byte, the silence is bounded by `first_byte` (the first-byte deadline).
- `deadline` ends the whole stream, whatever arrives.
- A heartbeat is due `heartbeat` seconds after the last write, but only at an event
  boundary; mid-event it waits (blocked) until the upstream reaches one.
"""

from __future__ import annotations

from enum import Enum

from ..errors import UpstreamTimeout


class Due(Enum):
    HEARTBEAT = "heartbeat"  # write a ping now
    NOTHING = "nothing"  # woke early (or mid-event): wait again


class RelayClock:
    __slots__ = ("heartbeat", "idle", "deadline", "first_byte", "started", "_last_write",
                 "_idle_deadline", "_blocked")

    def __init__(self, *, heartbeat: float, idle: float, deadline: float, now: float,
                 first_byte: float = float("inf"), started: bool = True) -> None:
        self.heartbeat = heartbeat  # 0 = off
        self.idle = idle
        self.deadline = deadline
        self.first_byte = first_byte
        self.started = started  # any upstream body byte yet
        self._last_write = now
        self._idle_deadline = now + idle if started else min(first_byte, now + idle)
        self._blocked = False  # a heartbeat is due but the stream is mid-event

    def bytes_arrived(self) -> None:
        self.started = True

    def wrote(self, now: float) -> None:
        """Complete lines (or a heartbeat) went to the client."""
        self._last_write = now
        self._blocked = False

    def forwarded(self, now: float) -> float:
        """Complete upstream lines arrived and went to the client (the hot path: one call).
        Returns `wake()`, which is now the earliest of idle, deadline and heartbeat from `now`."""
        self.started = True
        self._idle_deadline = wake = now + self.idle
        self._last_write = now
        self._blocked = False
        # Comparisons, not `min()`: a builtin that parses its arguments, twice a read.
        if self.deadline < wake:
            wake = self.deadline
        if self.heartbeat and now + self.heartbeat < wake:
            wake = now + self.heartbeat
        return wake

    def wake(self) -> float:
        """When the relay must look again if nothing arrives."""
        wake = self._idle_deadline
        if self.deadline < wake:
            wake = self.deadline
        if self.heartbeat and not self._blocked and self._last_write + self.heartbeat < wake:
            wake = self._last_write + self.heartbeat
        return wake

    def woke(self, now: float, at_boundary: bool) -> Due:
        """Nothing arrived by `wake()`: raise the timeout that is due, or say what to do."""
        if now >= self.deadline:
            raise UpstreamTimeout("the stream ran past total_timeout_seconds")
        if now >= self._idle_deadline:
            if not self.started:
                raise UpstreamTimeout("no first byte from the upstream in time")
            raise UpstreamTimeout("the upstream went silent past idle_timeout_seconds")
        if self.heartbeat and now >= self._last_write + self.heartbeat:
            if at_boundary:
                return Due.HEARTBEAT
            self._blocked = True
        return Due.NOTHING
