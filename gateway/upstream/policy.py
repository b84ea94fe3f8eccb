"""The attempt policy: open a request on the first target of a plan that answers.

Rules:
- Targets in the plan's order ("fallback"), or least in-flight first by weight ("balance");
  see `order.py`. Each target is asked for its own model name (`body_for(target)`).
- Retried on the same target (exponential backoff, jittered, up to `max_retries`): connect
  errors, resets before the answer, 5xx and 429. A `Retry-After` (seconds or an HTTP date)
  is honoured when it is no longer than `backoff_max_seconds`; a longer one moves on to
  the next target at once.
- Not retried on the same target, the next one is tried at once: no headers or no first
  byte within `first_byte_timeout_seconds`, and a 401/403 (the provider refused the
  gateway's own key; if no target is left it is a 502 naming the upstream, never the
  client's 401).
- A 400 saying the prompt is too long moves to `plan.overflow` when there is one; any other
  4xx is the answer, passed through (keys masked) and never retried.
- Circuit breakers, one per target (upstream, model): a target whose breaker is open is
  skipped, unless it is the last target left (then it is tried anyway, `force=True`). Only
  the provider's failures count (connect errors, resets, timeouts, 5xx, 429, and after the
  first byte a cut, stalled or malformed stream: `ended(opened, failure=...)`); an answer
  about the request (400, 404, 413, 422, a prompt too long, a content-policy refusal) or the
  gateway's key never does. A cancelled attempt releases its permit, so a cancelled probe
  does not wedge the breaker. A stream's verdict comes when the handler says its relay ended
  (see `breaker.py`).
- Every attempt, backoff and fallback together end by the request's `deadline`. What was
  tried comes back as a value: `Opened.attempts`, or `tries_of(exc)` on whatever `open`
  raised (a failure, a cancel); this module never writes a request's record.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from multidict import CIMultiDictProxy
from structlog.typing import FilteringBoundLogger
from yarl import URL

from ..breaker import Breakers, BreakerState, CircuitBreaker, Permit, Transition
from ..config import UpstreamSpec
from ..errors import UpstreamError, UpstreamTimeout
from ..metrics import Metrics
from ..retry import backoff_delay, parse_retry_after
from ..routing import Plan, Target
from .attempt import Attempt, Failure, Opened, Tries, attempt, carry_tries
from .continuation import Refusals
from .headers import Outbounds
from .health import publish
from .order import order_targets

Sleep = Callable[[float], Awaitable[None]]
DEFAULT_MAX_RESPONSE_BYTES = 33_554_432
#: failures that show the upstream took the gateway's key (the request itself was refused)
_KEY_ACCEPTED = frozenset({"ratelimited", "overflow", "rejected", "too_large"})


@dataclass(slots=True)
class _Request:
    """What one `open` call carries through its targets (and its overflow plan)."""

    body_for: Callable[[Target], bytes]
    client_headers: CIMultiDictProxy[str]
    request_id: str
    stream: bool
    deadline: float
    commit_at: float | None
    attempts: list[Attempt] = field(default_factory=list)
    retries: int = 0
    failure: Failure | None = None


class UpstreamClient:
    def __init__(
        self, session: aiohttp.ClientSession, metrics: Metrics, *,
        breakers: Breakers | None = None, logger: FilteringBoundLogger | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        sleep: Sleep = asyncio.sleep, jitter: Callable[[], float] = random.random,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._breakers = breakers or Breakers(time.perf_counter)
        self._logger = logger
        self._max_response_bytes = max_response_bytes
        self._sleep = sleep
        self._jitter = jitter
        # Attempts in flight per upstream (opening, reading a non-stream answer, or a stream
        # until the handler says its relay ended: `ended(opened)`), for "balance".
        self._in_flight: dict[str, int] = {}
        # Upstreams whose last verdict on the gateway's key was a 401/403 (for `/readyz`).
        self._refused: set[str] = set()
        #: targets that refused a mid-stream continuation lately (see `continuation.py`)
        self.continuations = Refusals(time.perf_counter)
        self._outbound = Outbounds()  # each upstream's headers, URL and timeout, prepared

    def in_flight(self, upstream: str) -> int:
        return self._in_flight.get(upstream, 0)

    @property
    def breakers(self) -> Breakers:
        return self._breakers

    def refused_credentials(self) -> set[str]:
        """The upstreams that refused the gateway's credentials (401/403) on their last
        attempt that said anything about them; an answer, or a 4xx about the request, clears it."""
        return set(self._refused)

    async def open(
        self, plan: Plan | Sequence[Target], body_for: Callable[[Target], bytes],
        client_headers: CIMultiDictProxy[str], request_id: str, *, stream: bool,
        deadline: float, commit_at: float | None = None,
    ) -> Opened:
        """Open `plan` (a bare target list is a "fallback" plan). Every try comes back in
        `Opened.attempts`, or on what this raises (`tries_of(exc)`, a cancel included)."""
        if not isinstance(plan, Plan):
            plan = Plan("", tuple(plan))
        state = _Request(body_for, client_headers, request_id, stream, deadline, commit_at)
        try:
            opened = await self._open_plan(plan, state)
        except BaseException as exc:
            if isinstance(exc, UpstreamError):
                exc.retries = state.retries
            carry_tries(exc, Tries(tuple(state.attempts), state.retries))
            raise
        opened.retries, opened.attempts = state.retries, tuple(state.attempts)
        return opened

    def ended(self, opened: Opened, *, ok: bool = False, failure: str | None = None) -> None:
        """The relay is done with a stream `open` gave (the first time counts): it leaves the
        upstream's in-flight count, and its target's breaker gets its verdict. `ok`: the answer
        was complete; `failure`: the provider failed it (cut, stall, malformed, truncated);
        neither: no verdict (the client left, drain)."""
        pending, opened.pending = opened.pending, None
        if pending is not None:
            breaker, permit = pending
            self._stream_ended(opened.target, breaker, permit, ok, failure)

    async def _open_plan(self, plan: Plan, state: _Request) -> Opened:
        loop = asyncio.get_running_loop()
        targets = plan.targets if plan.strategy != "balance" else order_targets(
            plan.targets, plan.strategy, in_flight=self._in_flight, draw=self._jitter,
            is_open=lambda t: self._breakers.is_open(t.upstream.name, t.model))
        for index, target in enumerate(targets):
            upstream = target.upstream
            breaker = self._breaker(target)
            payload = state.body_for(target)
            for tried in range(upstream.max_retries + 1):
                if loop.time() >= state.deadline:
                    state.failure = Failure("timeout", "total_timeout_seconds ran out while retrying")
                    break
                permit = breaker.allow(force=index == len(targets) - 1)
                if permit is None:
                    state.attempts.append(Attempt(upstream.name, target.model, "skipped", 0.0))
                    break
                if permit.transition is not None:
                    self._tell(target, permit.transition)
                if state.failure is not None:
                    reason = "fallback" if tried == 0 else state.failure.kind
                    self._metrics.upstream_retries.labels(upstream.name, reason).inc()
                    state.retries += 1
                result = await self._try(target, breaker, permit, payload, state)
                if isinstance(result, Opened):
                    return result
                state.failure = failure = result
                self._metrics.upstream_errors.labels(upstream.name, failure.kind).inc()
                if failure.kind == "overflow" and plan.overflow is not None:
                    return await self._open_plan(plan.overflow, state)
                if failure.kind in ("overflow", "rejected") and failure.answer is not None:
                    raise failure.answer  # a 4xx is the answer: never retried
                if failure.kind == "too_large":
                    raise UpstreamError(f"upstream {upstream.name}: {failure.detail}")
                if failure.kind in ("timeout", "refused") or tried == upstream.max_retries:
                    break  # a silent upstream or a refused key: the next target at once
                delay = backoff_delay(tried, upstream.backoff_base_seconds,
                                      upstream.backoff_max_seconds, self._jitter())
                asked = parse_retry_after(failure.retry_after, datetime.now(UTC), math.inf)
                if asked is not None:
                    if asked > upstream.backoff_max_seconds:
                        break  # the upstream asks for longer than we wait: try the next one
                    delay = max(delay, asked)
                await self._sleep(min(delay, max(0.0, state.deadline - loop.time())))
            if loop.time() >= state.deadline:
                break
        raise _final_error(state.failure, targets)

    async def _try(
        self, target: Target, breaker: CircuitBreaker, permit: Permit, payload: bytes, state: _Request,
    ) -> Opened | Failure:
        """One attempt with its breaker permit and in-flight count; recorded whatever happens."""
        upstream = target.upstream
        name = upstream.name
        self._in_flight[name] = self._in_flight.get(name, 0) + 1
        started = time.perf_counter()
        result: Opened | Failure | None = None
        try:
            result = await attempt(
                self._session, target, payload, state.client_headers, state.request_id,
                stream=state.stream, commit_at=state.commit_at, deadline=state.deadline,
                max_response_bytes=self._max_response_bytes, outbound=self._outbound.of(upstream))
        finally:
            if state.stream and isinstance(result, Opened):
                # counted in flight, and its breaker's verdict waits, until the relay ends
                result.pending = (breaker, permit)
            else:
                self._done(name)
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            if result is None:  # cancelled (the client went away) or a bug: no verdict
                breaker.release(permit)
                state.attempts.append(Attempt(name, target.model, "cancelled", duration_ms))
            elif isinstance(result, Opened):
                self._refused.discard(name)
                self._tell(target, breaker.answered(permit) if state.stream
                           else breaker.record_success(permit))
                state.attempts.append(
                    Attempt(name, target.model, "ok", duration_ms, result.response.status))
            else:
                refused = name in self._refused
                if result.kind == "refused":
                    self._refused.add(name)
                elif result.kind in _KEY_ACCEPTED:
                    self._refused.discard(name)
                if result.counts_against_upstream:
                    self._tell(target, breaker.record_failure(permit, result.detail))
                else:
                    breaker.release(permit)
                if refused != (name in self._refused):  # `gateway_upstream_up` follows it
                    publish(self._metrics, self._breakers, name, name in self._refused)
                state.attempts.append(Attempt(name, target.model, result.kind, duration_ms,
                                              result.status, result.excerpt))
        return result

    def _done(self, name: str) -> None:
        self._in_flight[name] -= 1
        if not self._in_flight[name]:
            del self._in_flight[name]

    def _stream_ended(self, target: Target, breaker: CircuitBreaker, permit: Permit,
                      ok: bool, error: str | None) -> None:
        """The relay of a stream this target opened is over: its breaker's verdict (a complete
        answer, a failure of the provider's, or none: the client left, drain)."""
        self._done(target.upstream.name)
        if ok:
            self._tell(target, breaker.record_success(permit))
        elif error is not None:
            self._tell(target, breaker.record_failure(permit, error))
        else:
            breaker.release(permit)

    def _breaker(self, target: Target) -> CircuitBreaker:
        upstream = target.upstream
        return self._breakers.get(upstream.name, target.model, upstream.failures_to_trip,
                                  upstream.cooldown_seconds)

    def _tell(self, target: Target, transition: Transition | None) -> None:
        """Log a target breaker's state change and publish the gauges it moves."""
        if transition is None:
            return
        upstream = target.upstream
        event = {BreakerState.OPEN: "circuit_opened", BreakerState.CLOSED: "circuit_closed",
                 BreakerState.HALF_OPEN: "circuit_half_open"}[transition.after]
        if transition.after is not BreakerState.HALF_OPEN:
            publish(self._metrics, self._breakers, upstream.name, upstream.name in self._refused)
        if self._logger is not None:
            self._logger.warning(event, upstream=upstream.name, model=target.model,
                                 cause=transition.cause, cooldown_seconds=upstream.cooldown_seconds)


def _final_error(failure: Failure | None, targets: Sequence[Target]) -> UpstreamError:
    """The error of a plan none of whose targets answered: the last failure's."""
    names = ", ".join(t.upstream.name for t in targets)
    if failure is None:
        return UpstreamError(f"upstream unavailable ({names})")
    if failure.answer is not None:  # a 429 that outlasted our retries: the client's to see
        return failure.answer
    if failure.kind == "refused":
        return UpstreamError(failure.detail)
    if failure.kind == "timeout":
        return UpstreamTimeout(f"no first byte from upstream ({names}): {failure.detail}")
    return UpstreamError(f"upstream unavailable ({names}): {failure.detail}")


async def reachable(upstream: UpstreamSpec, timeout: float = 2.0) -> bool:
    """Can a TCP connection to the upstream's host be opened now? (for `/readyz`)"""
    url = URL(upstream.base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(min(timeout, upstream.connect_timeout_seconds)):
            _, writer = await asyncio.open_connection(url.host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
