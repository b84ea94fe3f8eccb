"""One upstream attempt: the request with the client's key swapped for the upstream's, and
what came of it: `Opened` (the upstream answered and, for a stream, sent its first bytes)
or a `Failure` the policy may retry.

Header policy: hop-by-hop headers (RFC 9110 7.6.1), the client's credentials, cookies and
what aiohttp sets itself are never forwarded; the rest (e.g. `anthropic-beta`) is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from ..config import UpstreamSpec
from ..dialects import DIALECTS, Dialect
from ..errors import UpstreamHTTPError
from ..routing import Target

DROPPED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "x-api-key",
    "cookie", "accept-encoding", "content-encoding", "openai-organization", "openai-project",
    "x-request-id", "content-type",
})


@dataclass(slots=True)
class Opened:
    target: Target
    dialect: Dialect
    response: aiohttp.ClientResponse
    first: bytes  # stream: the first body bytes (b"" when committed early); non-stream: all
    deadline: float  # loop time at which the whole exchange must end
    retries: int = 0
    first_byte_deadline: float = float("inf")  # loop time by which a stream's first byte is due

    @property
    def upstream(self) -> UpstreamSpec:
        return self.target.upstream


@dataclass(slots=True)
class Failure:
    kind: str  # connect | timeout | status
    detail: str
    retry_after: str | None = None  # the upstream's Retry-After, as sent
    answer: UpstreamHTTPError | None = None  # a 429, passed through if it is the last word


def upstream_headers(
    upstream: UpstreamSpec, dialect: Dialect, client: CIMultiDictProxy[str], request_id: str,
    stream: bool,
) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in client.items() if k.lower() not in DROPPED_HEADERS)
    for name, value in dialect.default_headers.items():
        headers.setdefault(name, value)
    key = upstream.api_key.get_secret_value()
    if key:  # a local server (vLLM, Ollama) may take none: then no credentials are sent
        headers.update(dialect.auth_headers(key))
    headers["Content-Type"] = "application/json"
    headers["x-request-id"] = request_id
    if stream:  # a compressed stream would sit in the inflater's window: ask for none
        headers["Accept-Encoding"] = "identity"
    return headers


async def attempt(
    session: aiohttp.ClientSession, target: Target, payload: bytes,
    client_headers: CIMultiDictProxy[str], request_id: str, *, stream: bool,
    commit_at: float | None, deadline: float,
) -> Opened | Failure:
    """One try. `commit_at` (loop time): a stream still silent then is handed over without
    a first byte once the upstream answered 200, so the client gets heartbeats meanwhile."""
    upstream = target.upstream
    dialect = DIALECTS[upstream.dialect]
    headers = upstream_headers(upstream, dialect, client_headers, request_id, stream)
    # A non-stream answer comes whole, after the model finished: only the total bounds it.
    wait = upstream.first_byte_timeout_seconds if stream else upstream.total_timeout_seconds
    response: aiohttp.ClientResponse | None = None
    loop = asyncio.get_running_loop()
    first_byte_deadline = min(loop.time() + wait, deadline)
    budget = round(first_byte_deadline - loop.time(), 3)
    try:
        async with asyncio.timeout_at(first_byte_deadline):
            response = await session.post(
                dialect.url(upstream, target.path), data=payload, headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=upstream.connect_timeout_seconds),
            )
            if response.status >= 400:
                body = await response.read()
                response.release()
                return status_failure(response, body)
            if not stream:
                return Opened(target, dialect, response, await response.read(), deadline)
            if commit_at is not None and commit_at < first_byte_deadline:
                try:
                    async with asyncio.timeout_at(commit_at):
                        first = await response.content.readany()
                except TimeoutError:
                    if loop.time() < commit_at:
                        raise
                    # The client waited long enough: hand the stream over body-less.
                    return Opened(target, dialect, response, b"", deadline,
                                  first_byte_deadline=first_byte_deadline)
            else:
                first = await response.content.readany()
            if not first:
                response.release()
                return Failure("connect", "upstream closed the stream before any byte")
            return Opened(target, dialect, response, first, deadline,
                          first_byte_deadline=first_byte_deadline)
    except aiohttp.ConnectionTimeoutError:
        _close(response)
        return Failure("connect", f"connect timed out after {upstream.connect_timeout_seconds}s")
    except TimeoutError:
        _close(response)
        return Failure("timeout", f"nothing within {budget}s")
    except aiohttp.ClientError as exc:
        _close(response)
        return Failure("connect", type(exc).__name__)
    except BaseException:
        _close(response)  # cancelled (client gone): close the upstream connection now
        raise


def status_failure(response: aiohttp.ClientResponse, body: bytes) -> Failure:
    """A 5xx or 429 may be retried; any other 4xx is the answer, passed through as it is."""
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
    return Failure("status", f"HTTP {status}", retry_after, answer)


def _close(response: aiohttp.ClientResponse | None) -> None:
    if response is not None:
        response.close()
