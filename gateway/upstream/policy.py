"""The attempt policy: open a request on the first upstream of a chain that answers.

Rules:
- Retried (exponential backoff, full jitter, up to `max_retries` per upstream): connect
  errors, no first byte within `first_byte_timeout_seconds`, 5xx and 429 (a 429/503's
  `Retry-After` is honoured when it is no longer than `backoff_max_seconds`; a longer one
  moves on to the next upstream at once). Then the fallbacks, in order.
- Never retried: other 4xx (passed through as is), and anything after the first byte
  was handed back, because from then on the client has it.
- Every attempt, backoff and fallback together end by the request's `deadline`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ..config import UpstreamSpec
from ..errors import UpstreamError, UpstreamTimeout
from ..metrics import Metrics
from ..routing import Target
from .attempt import Failure, Opened, attempt

Sleep = Callable[[float], Awaitable[None]]


class UpstreamClient:
    def __init__(
        self, session: aiohttp.ClientSession, metrics: Metrics, *,
        sleep: Sleep = asyncio.sleep, jitter: Callable[[], float] = random.random,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._sleep = sleep
        self._jitter = jitter

    async def open(
        self, targets: Sequence[Target], body_for: Callable[[Target], bytes],
        client_headers: CIMultiDictProxy[str], request_id: str, *, stream: bool,
        deadline: float, commit_at: float | None = None,
    ) -> Opened:
        loop = asyncio.get_running_loop()
        retries = 0
        failure: Failure | None = None
        try:
            for target in targets:
                upstream = target.upstream
                if failure is not None:
                    self._metrics.upstream_retries.labels(upstream.name, "fallback").inc()
                    retries += 1
                payload = body_for(target)
                for tried in range(upstream.max_retries + 1):
                    if tried:
                        retries += 1
                        reason = failure.kind if failure else "other"
                        self._metrics.upstream_retries.labels(upstream.name, reason).inc()
                    if loop.time() >= deadline:
                        failure = Failure("timeout", "total_timeout_seconds ran out while retrying")
                        break
                    result = await attempt(
                        self._session, target, payload, client_headers, request_id,
                        stream=stream, commit_at=commit_at, deadline=deadline)
                    if isinstance(result, Opened):
                        result.retries = retries
                        return result
                    failure = result
                    self._metrics.upstream_errors.labels(upstream.name, failure.kind).inc()
                    if tried == upstream.max_retries:
                        break
                    delay = self._backoff(upstream, tried)
                    asked = _retry_after(failure.retry_after)
                    if asked is not None:
                        if asked > upstream.backoff_max_seconds:
                            break  # the upstream asks for longer than we wait: try the next one
                        delay = max(delay, asked)
                    await self._sleep(min(delay, max(0.0, deadline - loop.time())))
                if loop.time() >= deadline:
                    break
            assert failure is not None
            names = ", ".join(t.upstream.name for t in targets)
            if failure.answer is not None:
                raise failure.answer
            if failure.kind == "timeout":
                raise UpstreamTimeout(f"no first byte from upstream ({names}): {failure.detail}")
            raise UpstreamError(f"upstream unavailable ({names}): {failure.detail}")
        except UpstreamError as exc:
            exc.retries = retries
            raise

    def _backoff(self, upstream: UpstreamSpec, tried: int) -> float:
        ceiling = min(upstream.backoff_max_seconds, upstream.backoff_base_seconds * 2.0**tried)
        return ceiling * (0.5 + 0.5 * self._jitter())


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


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: treat as unknown, back off as usual
    return seconds if seconds >= 0 else None
