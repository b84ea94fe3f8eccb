"""One upstream attempt: the request with the client's key swapped for the upstream's, and
what came of it: `Opened` (the upstream answered and, for a stream, sent its first bytes)
or a `Failure` the policy retries, fails over or turns into the answer. What headers it
sends is `headers.py`'s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from ..breaker import CircuitBreaker, Permit
from ..config import UpstreamSpec
from ..dialects import DIALECTS, Dialect, Usage
from ..errors import UpstreamHTTPError
from ..routing import Target
from .deadline import Deadline
from .headers import Outbound
from .mask import mask_secrets

#: how much of a failed answer's (masked) body the log line keeps
EXCERPT_CHARS = 200

#: a stream's breaker and the permit its verdict waits on (`UpstreamClient.ended`)
Pending = tuple[CircuitBreaker, Permit]


@dataclass(slots=True)
class Opened:
    target: Target
    dialect: Dialect
    response: aiohttp.ClientResponse
    #: stream: the first body bytes (b"" when committed early); non-stream: the whole body
    first: bytes
    deadline: float  # loop time at which the whole exchange must end
    retries: int = 0
    first_byte_deadline: float = float("inf")  # loop time by which a stream's first byte is due
    #: every attempt of the `open` that gave this, in order; this one's own is the last
    attempts: tuple[Attempt, ...] = ()
    #: a stream's breaker permit and in-flight count, held by the policy until the handler says
    #: its relay ended (`UpstreamClient.ended(opened, ok=..., failure=...)`), None after that
    pending: Pending | None = None

    @property
    def upstream(self) -> UpstreamSpec:
        return self.target.upstream

    @property
    def own(self) -> Attempt | None:
        """This attempt's entry in `attempts` (its usage, cost and a cut are set there)."""
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True, slots=True)
class Tries:
    """What one `UpstreamClient.open` did: every attempt, in order, and the retries among them.
    `Opened.attempts` carries it on success; an exception (a failure, a cancel, drain's stop)
    carries it as `tries_of(exc)`: a cancel can return nothing, so it rides on the exception."""

    attempts: tuple[Attempt, ...] = ()
    retries: int = 0


_TRIES = "gateway_tries"


def carry_tries(exc: BaseException, tries: Tries) -> None:
    setattr(exc, _TRIES, tries)


def tries_of(exc: BaseException) -> Tries:
    """The `Tries` an exception (or one it was raised while handling) carries, else none."""
    seen: BaseException | None = exc
    for _ in range(3):  # e.g. Stopped, raised while the cancel that carries them was handled
        if seen is None:
            break
        found = getattr(seen, _TRIES, None)
        if isinstance(found, Tries):
            return found
        seen = seen.__cause__ or seen.__context__
    return Tries()


@dataclass(slots=True)
class Failure:
    #: connect | timeout (no first byte) | status (5xx) | ratelimited (429) | refused (401/403:
    #: the gateway's key) | overflow (prompt too long) | rejected (other 4xx) | too_large
    kind: str
    detail: str
    retry_after: str | None = None  # the upstream's Retry-After, as sent
    answer: UpstreamHTTPError | None = None  # a 4xx, passed through if it is the last word
    status: int | None = None
    excerpt: str | None = None  # the start of the answer's body, keys masked

    @property
    def counts_against_upstream(self) -> bool:
        """Does it count towards the target's circuit breaker? Connect errors, resets,
        timeouts, 5xx and 429 are the provider's; any other 4xx (a prompt too long, a
        content-policy refusal) is about the request, a 401/403 about the gateway's key."""
        return self.kind in ("connect", "timeout", "status", "ratelimited")


@dataclass(slots=True)
class Attempt:
    """One try, for the request's log line (its usage and cost are set once known)."""

    upstream: str
    model: str
    #: "ok", a `Failure.kind`, "skipped" (circuit open), "cancelled", or "cut" (it answered,
    #: then was cut after its first byte and the stream resumed on a later attempt)
    outcome: str
    duration_ms: float
    status: int | None = None
    excerpt: str | None = None
    #: what this attempt's answer used and cost (set once it is known): only an attempt that
    #: answered (or, resumed, streamed part of the answer) is charged; a failed one costs 0
    usage: Usage | None = None
    cost_usd: float = 0.0

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"upstream": self.upstream, "model": self.model,
                               "outcome": self.outcome, "duration_ms": self.duration_ms,
                               "cost_usd": self.cost_usd}
        if self.usage is not None:
            out["prompt_tokens"] = self.usage.prompt_tokens
            out["completion_tokens"] = self.usage.completion_tokens
        if self.status is not None:
            out["status"] = self.status
        if self.excerpt is not None:
            out["excerpt"] = self.excerpt
        return out


async def attempt(
    session: aiohttp.ClientSession, target: Target, payload: bytes,
    client_headers: CIMultiDictProxy[str], request_id: str, *, stream: bool,
    commit_at: float | None, deadline: float, max_response_bytes: int,
    outbound: Outbound | None = None,
) -> Opened | Failure:
    """One try. `commit_at` (loop time): a stream still silent then is handed over without
    a first byte once the upstream answered 200, so the client gets heartbeats meanwhile.
    `outbound`: the target's upstream's, prepared (else made here)."""
    upstream = target.upstream
    dialect = DIALECTS[upstream.dialect]
    if outbound is None:
        outbound = Outbound(upstream, dialect)
    headers = outbound.headers(client_headers, request_id, stream)
    # The first byte is due within first_byte_timeout_seconds: for a non-stream request that is
    # the answer's head (many providers send it once the answer is done: a slow non-stream
    # model needs a larger first_byte_timeout_seconds); its body is then bounded by the total.
    response: aiohttp.ClientResponse | None = None
    loop = asyncio.get_running_loop()
    now = loop.time()
    first_byte_deadline = min(now + upstream.first_byte_timeout_seconds, deadline)
    try:
        with Deadline(loop, first_byte_deadline) as bound:
            response = await session.post(
                dialect.url(upstream, target.path) if target.path else outbound.url,
                data=payload, headers=headers, timeout=outbound.timeout)
            if response.status >= 400:
                body = await _read_capped(response, max_response_bytes)
                response.release()
                return status_failure(upstream, response, body or b"")
            content_type = response.headers.get("Content-Type", "")
            if not _expected(content_type, stream):  # a proxy's HTML page, with a 200
                response.close()
                wanted = "an event stream" if stream else "JSON"
                return Failure("status", f"HTTP {response.status} with Content-Type "
                               f"{content_type[:64]!r}, not {wanted}", status=response.status)
            if not stream:
                bound.extend(deadline)
                whole = await _read_capped(response, max_response_bytes)
                if whole is None:
                    response.close()
                    return Failure("too_large", "upstream answer over max_response_bytes",
                                   status=response.status)
                return Opened(target, dialect, response, whole, deadline)
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
        return Failure("timeout", f"nothing within {round(first_byte_deadline - now, 3)}s")
    except aiohttp.ClientConnectorDNSError as exc:  # a bare `gaierror` names nothing: say which host
        _close(response)
        return Failure("connect", f"cannot resolve upstream host {exc.host!r} (DNS lookup failed)")
    except aiohttp.ClientError as exc:
        _close(response)
        return Failure("connect", type(exc).__name__)
    except BaseException:
        _close(response)  # cancelled (client gone): close the upstream connection now
        raise


def _expected(content_type: str, stream: bool) -> bool:
    """A stream must be `text/event-stream`, a JSON answer JSON; an upstream that names no
    type is given the benefit of the doubt (the relay still checks every line is SSE)."""
    if not content_type:
        return True
    if content_type == ("text/event-stream" if stream else "application/json"):
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "text/event-stream" if stream else "json" in kind


def status_failure(upstream: UpstreamSpec, response: aiohttp.ClientResponse, body: bytes) -> Failure:
    """What an error status means for the policy; every body is masked before it is kept."""
    status = response.status
    content_type = response.headers.get("Content-Type", "application/json")
    body = mask_secrets(body, [upstream.api_key.get_secret_value()])
    excerpt = body[:EXCERPT_CHARS].decode(errors="replace")
    retry_after = response.headers.get("Retry-After")
    if status in (401, 403):  # the provider refused OUR key: never the client's 401
        return Failure("refused", f"upstream {upstream.name} refused the gateway's credentials",
                       status=status, excerpt=excerpt)
    if status >= 500:
        return Failure("status", f"HTTP {status}", retry_after, status=status, excerpt=excerpt)
    answer = UpstreamHTTPError(status, body, content_type)
    if status == 429:  # if retries don't help, the client gets it as it is
        if retry_after is not None:
            answer.headers["Retry-After"] = retry_after
        return Failure("ratelimited", "HTTP 429", retry_after, answer, status, excerpt)
    kind = "overflow" if status == 400 and prompt_too_long(body) else "rejected"
    return Failure(kind, f"HTTP {status}", None, answer, status, excerpt)


def prompt_too_long(body: bytes) -> bool:
    """A 400 saying the prompt does not fit the model, in any dialect's words (OpenAI-compatible
    servers vary, so every dialect is asked: `Dialect.prompt_too_long`)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return False
    return any(dialect.prompt_too_long(error) for dialect in DIALECTS.values())


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The whole (decompressed) body, or None once it grows past `cap` bytes."""
    content = response.content
    if content.is_eof():  # the whole answer came with its head (most JSON answers do)
        whole = content.read_nowait()
        return whole if len(whole) <= cap else None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _close(response: aiohttp.ClientResponse | None) -> None:
    if response is not None:
        response.close()
