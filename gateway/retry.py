"""Retry arithmetic with no I/O: an upstream's `Retry-After` header, and the backoff between attempts."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# RFC 9110 delay-seconds is 1*DIGIT; providers also send "1.5" and the odd "-1", so a sign and
# a fraction are accepted too. No exponents, "inf" or "nan": those are garbage, not delays.
_SECONDS = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


def parse_retry_after(value: str | None, now: datetime, cap: float) -> float | None:
    """Seconds to wait that a `Retry-After` header asks for, in [0, cap]; None if absent or garbage.

    Rules (RFC 9110 section 10.2.3):
    - either delay-seconds ("120", also "1.5") or an HTTP date, in any of the three formats a
      recipient must accept (IMF-fixdate, RFC 850, asctime); a date without a zone is UTC;
    - a negative delay or a date in the past means "now": 0, never a negative wait;
    - anything longer than `cap` is `cap`: the caller decides what a capped wait means;
    - `now` is the time the answer arrived; a naive `now` is taken as UTC.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (ValueError, TypeError, IndexError):  # each is a malformed date, depending on the shape
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)


def backoff_delay(attempt: int, base: float, cap: float, jitter: float) -> float:
    """The wait before retry number `attempt` (0 = the first retry): exponential, jittered.

    The ceiling doubles with each attempt from `base` up to `cap`; the wait is between half the
    ceiling and the ceiling (`jitter` in [0, 1], e.g. `random.random()`): never zero, so a burst
    of clients does not retry in lockstep, and never above `cap`.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be in [0, 1]")
    # 2.0 ** 1024 overflows; the cap was reached long before that exponent anyway.
    ceiling = cap if attempt >= 1023 else min(cap, base * 2.0**attempt)
    if not math.isfinite(ceiling) or ceiling < 0:
        raise ValueError("base and cap must be finite and >= 0")
    return ceiling * (0.5 + 0.5 * jitter)
