"""Usage an upstream reports that no model reaches (a bug, or a hostile upstream): clamped
before anything is charged, so every backend's arithmetic stays in range (Redis counters are
64-bit integers, its Lua numbers doubles) and the tenant is charged the clamp."""

from __future__ import annotations

from ..body import MAX_TOKENS
from ..dialects import Usage

#: the most tokens one count of one answer's usage is taken to be (prompt, completion, cache
#: read, cache write): the answer-length bound, which no model reaches either
MAX_USAGE_TOKENS = MAX_TOKENS
#: the most one request is charged, in micro-dollars ($1,000,000,000): exact in a double, and
#: 9,223 such charges still fit in a Redis account's 64-bit counter
MAX_COST_MICROS = 10**15

_COUNTS = ("prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens")


def clamp_usage(usage: Usage) -> dict[str, int] | None:
    """Clamp each count of `usage`, in place, to 0..MAX_USAGE_TOKENS. Returns the counts as
    reported when one was out of range (for the anomaly's log line), else None."""
    if (0 <= usage.prompt_tokens <= MAX_USAGE_TOKENS and 0 <= usage.completion_tokens <= MAX_USAGE_TOKENS
            and 0 <= usage.cache_read_tokens <= MAX_USAGE_TOKENS
            and 0 <= usage.cache_write_tokens <= MAX_USAGE_TOKENS):
        return None  # every request's case: no dict, no generator
    reported = {name: getattr(usage, name) for name in _COUNTS}
    for name, value in reported.items():
        setattr(usage, name, min(max(value, 0), MAX_USAGE_TOKENS))
    return reported


def clamp_cost(micros: int) -> int:
    return min(max(micros, 0), MAX_COST_MICROS)
