"""Upstream: open a request on the first upstream that answers, with retries and fallbacks.

Rules:
- Retried (exponential backoff, full jitter, up to `max_retries` per upstream): connect
  errors, no first byte within `first_byte_timeout_seconds`, 5xx and 429 (a 429/503's
  `Retry-After` is honoured when it is no longer than `backoff_max_seconds`; a longer one
  moves on to the next upstream at once). Then the fallbacks, in order.
- Never retried: other 4xx (passed through as is), and anything after the first byte
  was handed back, because from then on the client has it.
- For a stream, "opened" means the first body bytes are in hand: a stream that dies
  before its first byte is still retried, and the client's status is still ours to choose.
  Except when the client has waited `commit_at` (the heartbeat interval) already: once the
  upstream has answered 200, the stream is opened without a body byte, so the caller can
  send headers and heartbeats through a long think; the first byte is then awaited by the
  relay, up to the same first-byte deadline, and a timeout becomes an error event.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from .config import UpstreamSpec
from .dialects import DIALECTS
from .errors import UpstreamError, UpstreamHTTPError, UpstreamTimeout
from .metrics import Metrics

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Opened:
    upstream: UpstreamSpec
    response: aiohttp.ClientResponse
    first: bytes  # stream: the first body bytes (b"" when committed early); non-stream: all
    retries: int
    first_byte_deadline: float = float("inf")  # loop time by which a stream's first byte is due


@dataclass(slots=True)
class _Failure:
    kind: str  # connect | timeout | status
    detail: str
    retry_after: float | None = None
    answer: UpstreamHTTPError | None = None  # a 429, passed through if it is the last word


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
        self, chain: list[UpstreamSpec], body_for: Callable[[UpstreamSpec], bytes],
        client_headers: dict[str, str], request_id: str, *, stream: bool,
        commit_at: float | None = None,
    ) -> Opened:
        loop = asyncio.get_running_loop()
        # Every attempt, backoff and fallback together stay within the primary's total timeout.
        overall = loop.time() + chain[0].total_timeout_seconds
        retries = 0
        failure: _Failure | None = None
        try:
            for upstream in chain:
                if failure is not None:
                    self._metrics.upstream_retries.labels(upstream.name, "fallback").inc()
                    retries += 1
                payload = body_for(upstream)
                for attempt in range(upstream.max_retries + 1):
                    if attempt:
                        retries += 1
                        reason = failure.kind if failure else "other"
                        self._metrics.upstream_retries.labels(upstream.name, reason).inc()
                    if loop.time() >= overall:
                        failure = _Failure("timeout", "total_timeout_seconds ran out while retrying")
                        break
                    result = await self._attempt(
                        upstream, payload, client_headers, request_id, stream, commit_at, overall)
                    if isinstance(result, Opened):
                        result.retries = retries
                        return result
                    failure = result
                    self._metrics.upstream_errors.labels(upstream.name, failure.kind).inc()
                    if attempt == upstream.max_retries:
                        break
                    delay = self._backoff(upstream, attempt)
                    if failure.retry_after is not None:
                        if failure.retry_after > upstream.backoff_max_seconds:
                            break  # the upstream asks for longer than we wait: try the next one
                        delay = max(delay, failure.retry_after)
                    await self._sleep(min(delay, max(0.0, overall - loop.time())))
                if loop.time() >= overall:
                    break
            assert failure is not None
            names = ", ".join(u.name for u in chain)
            if failure.answer is not None:
                raise failure.answer
            if failure.kind == "timeout":
                raise UpstreamTimeout(f"no first byte from upstream ({names}): {failure.detail}")
            raise UpstreamError(f"upstream unavailable ({names}): {failure.detail}")
        except UpstreamError as exc:
            exc.retries = retries
            raise

    async def _attempt(
        self, upstream: UpstreamSpec, payload: bytes, client_headers: dict[str, str],
        request_id: str, stream: bool, commit_at: float | None, overall: float,
    ) -> Opened | _Failure:
        dialect = DIALECTS[upstream.dialect]
        headers = dialect.upstream_headers(upstream, client_headers)
        headers["Content-Type"] = "application/json"
        headers["x-request-id"] = request_id
        if stream:  # a compressed stream would sit in the inflater's window: ask for none
            headers["Accept-Encoding"] = "identity"
        # A non-stream answer comes whole, after the model finished: only the total bounds it.
        deadline = upstream.first_byte_timeout_seconds if stream else upstream.total_timeout_seconds
        response: aiohttp.ClientResponse | None = None
        loop = asyncio.get_running_loop()
        first_byte_deadline = min(loop.time() + deadline, overall)
        budget = round(first_byte_deadline - loop.time(), 3)
        try:
            async with asyncio.timeout_at(first_byte_deadline):
                response = await self._session.post(
                    dialect.url(upstream), data=payload, headers=headers,
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=upstream.connect_timeout_seconds),
                )
                if response.status >= 400:
                    body = await response.read()
                    response.release()
                    return self._status_failure(response, body)
                if not stream:
                    return Opened(upstream, response, await response.read(), 0)
                if commit_at is not None and commit_at < first_byte_deadline:
                    try:
                        async with asyncio.timeout_at(commit_at):
                            first = await response.content.readany()
                    except TimeoutError:
                        if loop.time() < commit_at:
                            raise
                        # The client waited long enough: hand the stream over body-less.
                        return Opened(upstream, response, b"", 0, first_byte_deadline)
                else:
                    first = await response.content.readany()
                if not first:
                    response.release()
                    return _Failure("connect", "upstream closed the stream before any byte")
                return Opened(upstream, response, first, 0, first_byte_deadline)
        except aiohttp.ConnectionTimeoutError:
            _close(response)
            seconds = upstream.connect_timeout_seconds
            return _Failure("connect", f"connect timed out after {seconds}s")
        except TimeoutError:
            _close(response)
            return _Failure("timeout", f"nothing within {budget}s")
        except aiohttp.ClientError as exc:
            _close(response)
            return _Failure("connect", type(exc).__name__)
        except BaseException:
            _close(response)  # cancelled (client gone): close the upstream connection now
            raise

    def _status_failure(self, response: aiohttp.ClientResponse, body: bytes) -> _Failure:
        status = response.status
        content_type = response.headers.get("Content-Type", "application/json")
        if status != 429 and status < 500:
            raise UpstreamHTTPError(status, body, content_type)
        retry_after = response.headers.get("Retry-After")
        answer = None
        if status == 429:  # a 4xx: if retries don't help, the client gets it as it is
            answer = UpstreamHTTPError(status, body, content_type)
            if retry_after is not None:
                answer.headers["Retry-After"] = retry_after
        return _Failure("status", f"HTTP {status}", _retry_after(retry_after), answer)

    def _backoff(self, upstream: UpstreamSpec, attempt: int) -> float:
        ceiling = min(upstream.backoff_max_seconds, upstream.backoff_base_seconds * 2.0**attempt)
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


def _close(response: aiohttp.ClientResponse | None) -> None:
    if response is not None:
        response.close()
