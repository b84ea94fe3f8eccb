"""Which tenant each Responses API id the gateway relayed belongs to, so a tenant can't continue
another tenant's conversation by its id.

Rules:
- Every `/v1/responses` call goes upstream under the one provider key, so the provider would
  hand any tenant any conversation whose id it names. The gateway remembers the tenant of each
  response id it relays: from a JSON answer's `id`, and from a stream's `response.created`
  event (the first event; only the first reads of a stream are looked at, and only the one
  line that names the event is parsed).
- A request whose `previous_response_id` the gateway relayed for another tenant is a 404 in
  the Responses shape, before admission and before any upstream call. An id the gateway does
  not know (never relayed here, or forgotten) goes upstream as it is.
- Memory (`ratelimit.backend = "memory"`): at most `MAX_REMEMBERED` ids, the oldest forgotten
  first, each for `KEEP_SECONDS`. Redis (`"redis"`): one key per id,
  `{key_prefix}resp:{id}`, expiring after `KEEP_SECONDS`, shared by workers and replicas;
  Redis down: `fail_open` decides (forward unchecked, or 503).
- The same check will guard `GET /v1/responses/{id}` (and its delete) if that route is added.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from .admission.redis import REDIS_DOWN, connect
from .errors import GatewayError, Shed
from .state import CONFIG, LOGGER, RESPONSE_OWNERS

#: how long an id's owner is remembered: as long as the provider keeps a stored response
#: (OpenAI: 30 days)
KEEP_SECONDS = 30 * 86400
#: the most ids one process remembers with the memory backend (about 100 bytes each)
MAX_REMEMBERED = 100_000
#: a stream's id is looked for in its first reads only (`response.created` is its first event)
WATCHED_READS = 4
_CREATED = b'"response.created"'


class PreviousResponseNotFound(GatewayError):
    status = 404
    code = "previous_response_not_found"
    kind = "not_found"
    outcome = "not_found"


class Owners(Protocol):
    def remember(self, response_id: str, tenant: str) -> None:
        """Note `tenant` as the owner of `response_id`. Never waits: Redis is written in the
        background, the write sent before the answer that carries the id goes out (a stream's
        id: long before the stream ends)."""
        ...

    async def owner(self, response_id: str) -> str | None:
        """The tenant the gateway relayed `response_id` for, None when it does not know."""
        ...

    async def close(self) -> None: ...


class MemoryOwners:
    def __init__(self, keep: float = KEEP_SECONDS, limit: int = MAX_REMEMBERED) -> None:
        self._keep, self._limit = keep, limit
        self._owners: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def remember(self, response_id: str, tenant: str) -> None:
        self._owners[response_id] = (tenant, time.perf_counter() + self._keep)
        self._owners.move_to_end(response_id)
        while len(self._owners) > self._limit:
            self._owners.popitem(last=False)

    async def owner(self, response_id: str) -> str | None:
        found = self._owners.get(response_id)
        if found is None:
            return None
        if found[1] <= time.perf_counter():
            del self._owners[response_id]
            return None
        return found[0]

    async def close(self) -> None:
        self._owners.clear()


class RedisOwners:
    def __init__(self, url: str, prefix: str, *, fail_open: bool, logger: FilteringBoundLogger,
                 keep: int = KEEP_SECONDS) -> None:
        self._redis = connect(url, max_connections=8)
        self._prefix, self._fail_open, self._logger, self._keep = prefix + "resp:", fail_open, logger, keep
        self._writes: set[asyncio.Task[None]] = set()

    def remember(self, response_id: str, tenant: str) -> None:
        task = asyncio.get_running_loop().create_task(self._write(response_id, tenant))
        self._writes.add(task)  # held until done: a task nobody references may be collected
        task.add_done_callback(self._writes.discard)

    async def _write(self, response_id: str, tenant: str) -> None:
        try:
            await self._redis.set(self._prefix + response_id, tenant, ex=self._keep)
        except REDIS_DOWN as exc:
            self._logger.warning("response_owner_not_saved", error=type(exc).__name__)

    async def owner(self, response_id: str) -> str | None:
        try:
            found: bytes | str | None = await self._redis.get(self._prefix + response_id)
        except REDIS_DOWN as exc:
            self._logger.warning("response_owner_unavailable", error=type(exc).__name__,
                                 fail_open=self._fail_open)
            if self._fail_open:
                return None
            raise Shed("response ownership unavailable", reason="response_owners_unavailable",
                       retry_after=1) from exc
        return found.decode() if isinstance(found, bytes) else found

    async def close(self) -> None:
        if self._writes:  # the last ids noted: written before the pool closes (bounded)
            await asyncio.wait(self._writes, timeout=1.0)
        await self._redis.aclose()




async def response_owners_ctx(app: web.Application) -> AsyncIterator[None]:
    """`cleanup_ctx`: the owners' store, in the rate limiter's backend."""
    config = app[CONFIG].ratelimit
    owners: Owners = MemoryOwners()
    if config.backend == "redis":
        owners = RedisOwners(config.redis_url, config.key_prefix, fail_open=config.fail_open,
                             logger=app[LOGGER])
    app[RESPONSE_OWNERS] = owners
    yield
    await owners.close()


async def check_previous(app: web.Application, tenant: str, body: dict[str, Any]) -> None:
    """Raise the 404 when `previous_response_id` names a response relayed for another tenant."""
    previous = body.get("previous_response_id")
    if not isinstance(previous, str) or not previous:
        return
    owner = await app[RESPONSE_OWNERS].owner(previous)
    if owner is not None and owner != tenant:
        raise PreviousResponseNotFound(f"Previous response with id '{previous[:128]}' not found.")


def remember_answer(app: web.Application, tenant: str, status: int, body: bytes) -> None:
    """A JSON answer's `id` (a 2xx answer only: an error body has none of its own)."""
    if not 200 <= status < 300:
        return
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    response_id = parsed.get("id") if isinstance(parsed, dict) else None
    if isinstance(response_id, str) and response_id:
        app[RESPONSE_OWNERS].remember(response_id, tenant)


class StreamIdWatch:
    """Fed a Responses stream's complete lines, read by read: finds the id in the
    `response.created` event within the first WATCHED_READS reads and remembers its owner."""

    __slots__ = ("_owners", "_tenant", "_reads")

    def __init__(self, owners: Owners, tenant: str) -> None:
        self._owners: Owners | None = owners
        self._tenant = tenant
        self._reads = 0

    def feed(self, complete: bytes) -> None:
        if self._owners is None:
            return
        self._reads += 1
        at = complete.find(_CREATED)
        if at >= 0:
            start = complete.rfind(b"\n", 0, at) + 1
            end = complete.find(b"\n", at)
            line = complete[start:end if end >= 0 else len(complete)].strip()
            if line.startswith(b"data:"):
                response_id = _created_id(line[5:])
                if response_id is not None:
                    self._owners.remember(response_id, self._tenant)
                    self._owners = None  # found: nothing more to look at
                    return
        if self._reads >= WATCHED_READS:
            self._owners = None


def watch_stream(app: web.Application, tenant: str) -> StreamIdWatch:
    return StreamIdWatch(app[RESPONSE_OWNERS], tenant)


def _created_id(data: bytes) -> str | None:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    response = event.get("response") if isinstance(event, dict) else None
    found = response.get("id") if isinstance(response, dict) else None
    return found if isinstance(found, str) and found else None
