"""A continuously refilling token bucket: pure arithmetic, the clock is passed in."""

from __future__ import annotations

import math

#: Refill is `elapsed * rate` in floats, so "exactly one token after 0.1 s at 10/s" can land
#: at 0.9999999999. Comparisons allow this much slack so a whole token is never refused by
#: rounding. The Redis script uses the same value (see `redis.py`).
EPSILON = 1e-9


def fits(amount: float, level: float) -> bool:
    """Whether `amount` can be taken from a bucket at `level` (with EPSILON's slack)."""
    return amount - level <= EPSILON


def seconds_until(level: float, amount: float, per_second: float) -> float:
    """Seconds a bucket at `level` refilling at `per_second` needs before `amount` fits."""
    if fits(amount, level):
        return 0.0
    deficit = amount - level
    return deficit / per_second if per_second > 0 else math.inf


class TokenBucket:
    """`capacity` tokens, refilled continuously at `per_second`; starts full.

    Rules:
    - refill is continuous (no fixed windows), so a client never gets two bursts back to
      back at a window edge; the bucket never holds more than `capacity`;
    - a take is all or nothing;
    - `adjust` settles a reservation after the fact and may push the level below zero (debt):
      a tenant that used more than it reserved pays it back before its next take;
    - time never runs backwards here: a `now` earlier than the last one refills nothing.
    """

    __slots__ = ("capacity", "per_second", "_level", "_last")

    def __init__(self, capacity: float, per_second: float, now: float) -> None:
        if capacity <= 0 or per_second <= 0:
            raise ValueError("capacity and per_second must be positive")
        self.capacity = capacity
        self.per_second = per_second
        self._level = capacity
        self._last = now

    def _refill(self, now: float) -> float:
        if now > self._last:
            self._level = min(self.capacity, self._level + (now - self._last) * self.per_second)
            self._last = now
        return self._level

    def available(self, now: float) -> float:
        """Tokens in the bucket now (negative while in debt)."""
        return self._refill(now)

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until `amount` could be taken: 0 if now, inf if it exceeds the capacity."""
        if amount > self.capacity + EPSILON:
            return math.inf
        return seconds_until(self._refill(now), amount, self.per_second)

    def try_take(self, amount: float, now: float) -> bool:
        """Take `amount` if it is all there, else take nothing."""
        if not fits(amount, self._refill(now)):
            return False
        self._level -= amount
        return True

    def take(self, amount: float) -> None:
        """Take `amount` at the level of the last refill, unchecked: for a caller that has just
        read `available(now)` and checked it (one refill per admission, not four)."""
        self._level -= amount

    def adjust(self, delta: float, now: float) -> None:
        """Settle: `+delta` refunds (capped at capacity), `-delta` charges (may go into debt)."""
        self._level = min(self.capacity, self._refill(now) + delta)

    def reset_time(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self._refill(now)) / self.per_second
