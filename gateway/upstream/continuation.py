"""Where a stream cut after its first byte is continued: the continuation targets of a plan,
and the targets remembered as refusing continuations.

Rules:
- The continuation targets of a cut are the cut target itself (a cut is often transient),
  then the plan's later targets, each only when its upstream `supports_prefill`; a target
  already used for a continuation of this stream is not asked again (a stream's chain of
  continuations is bounded by its plan), nor is one that refused a continuation within
  the last `REFUSAL_SECONDS`.
- A continuation a target refuses (an answer about the request: 400, 404, 413, 422, a
  prompt too long) moves on to the next continuation target, and that target is remembered
  as refusing continuations. Any other failure (5xx, timeouts after the policy's retries)
  moves on too, without remembering it. Only when no target is left does it fail, and the
  caller names the first cause, never this one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..errors import UpstreamError, UpstreamHTTPError
from ..routing import Plan, Target
from .attempt import Opened

#: how long a target that refused a continuation is not asked for one again
REFUSAL_SECONDS = 600.0
#: targets remembered at most (the oldest is forgotten first)
MAX_REFUSALS = 1024


class NoContinuation(Exception):
    """No target is left that could continue the stream."""


class Refusals:
    """Targets (upstream, model) that refused a continuation, each for `REFUSAL_SECONDS`
    (on the app, shared by every request; bounded)."""

    def __init__(self, clock: Callable[[], float], seconds: float = REFUSAL_SECONDS,
                 max_size: int = MAX_REFUSALS) -> None:
        self._clock = clock
        self._seconds = seconds
        self._max = max_size
        self._until: dict[tuple[str, str], float] = {}

    def note(self, target: Target) -> None:
        key = (target.upstream.name, target.model)
        self._until.pop(key, None)
        if len(self._until) >= self._max:
            del self._until[next(iter(self._until))]
        self._until[key] = self._clock() + self._seconds

    def refuses(self, target: Target) -> bool:
        key = (target.upstream.name, target.model)
        until = self._until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[key]
            return False
        return True


#: a target as `used` keeps it: (upstream name, model)
Key = tuple[str, str]


def key(target: Target) -> Key:
    return target.upstream.name, target.model


def continuation_targets(targets: Sequence[Target], cut: Target, used: set[Key],
                         refusals: Refusals) -> tuple[Target, ...]:
    """The cut target, then the later ones, that may continue the stream now."""
    start = next((i for i, t in enumerate(targets) if key(t) == key(cut)), len(targets))
    return tuple(t for t in (cut, *targets[start + 1:])
                 if t.upstream.supports_prefill and key(t) not in used and not refusals.refuses(t))


async def open_continuation(
    name: str, candidates: tuple[Target, ...],
    open_plan: Callable[[Plan, Callable[[Target], None]], Awaitable[Opened]],
    refusals: Refusals, used: set[Key],
) -> Opened:
    """Open the first candidate that continues. `open_plan(plan, asked)` opens a plan with the
    policy (retries, breakers), calling `asked(target)` as each target is asked."""
    left = list(candidates)
    if not left:
        raise NoContinuation(name)
    failure: UpstreamError | None = None
    while left:
        asked: list[Target] = []
        try:
            opened = await open_plan(Plan(name, tuple(left)), asked.append)
        except UpstreamHTTPError as exc:  # the last target asked refused the continuation
            failure = exc
            refused = asked[-1] if asked else left[0]
            if exc.status != 429:
                refusals.note(refused)
            used.add(key(refused))
            at = next((i for i, t in enumerate(left) if key(t) == key(refused)), len(left))
            left = left[at + 1:]
            continue
        except UpstreamError as exc:  # every target left failed (the policy tried them all)
            used.update(key(t) for t in asked)
            raise exc from None
        used.add(key(opened.target))
        return opened
    assert failure is not None
    raise failure
