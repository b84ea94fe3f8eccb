"""The Redis store shared by two real gateway processes: a tenant created on one serves on
the other, a key revoked on one is refused by the other within 1 s; with the store killed,
existing keys still serve and admin writes are 503; killed in the middle of writes, every
answer is a 201 or an error, and no tenant is half written."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from gateway.auth import hash_key
from tests._proc import Child, eventually
from tests._store import ADMIN_KEY, call
from tests.conftest import CLIENT_KEY, Mock, Process, Spawn, chat_body
from tests.conftest_redis import _ready, _redis_binary, _start_redis, free_port

pytestmark = pytest.mark.redis
PREFIX = "store-test:"


class DurableRedis:
    """A private `redis-server` that keeps its data across a kill (AOF, fsync each write)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path
        self.child: Child | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        self.child = _start_redis(_redis_binary(), self.port, self.dir / f"redis-{self.starts}.log",
                                  "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir))
        await _ready(self.child)

    async def kill(self) -> None:
        if self.child is not None:
            child, self.child = self.child, None
            await child.stop(signal.SIGKILL, timeout=10)


@pytest.fixture
async def durable_redis(tmp_path: Path) -> AsyncIterator[DurableRedis]:
    server = DurableRedis(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


def sections(url: str) -> dict[str, Any]:
    return {"server": {"admin_key_sha256": hash_key(ADMIN_KEY)}, "store": {"backend": "redis"},
            "ratelimit": {"redis_url": url, "key_prefix": PREFIX}}


async def chat(gateway: Process, key: str) -> int:
    status, _ = await call("POST", f"{gateway.url}/v1/chat/completions", key, chat_body(stream=False))
    return status


async def test_another_process_serves_a_new_tenant_and_refuses_a_revoked_key_within_1s(
        mock: Mock, spawned: Spawn, durable_redis: DurableRedis) -> None:
    a = spawned(mock.url, name="a", **sections(durable_redis.url))
    b = spawned(mock.url, name="b", **sections(durable_redis.url))
    assert (await call("POST", f"{a.url}/admin/tenants", ADMIN_KEY, {"name": "shared"}))[0] == 201
    status, key = await call("POST", f"{a.url}/admin/tenants/shared/keys", ADMIN_KEY, {})
    assert status == 201
    issued = time.perf_counter()
    await eventually(lambda: _status_is(b, key["key"], 200), timeout=1.0, interval=0.02,
                     what="the other process serves the new tenant's key")
    served_after = time.perf_counter() - issued
    assert await chat(a, key["key"]) == 200
    status, _ = await call("DELETE", f"{a.url}/admin/keys/{key['id']}", ADMIN_KEY)
    assert status == 204
    revoked = time.perf_counter()
    await eventually(lambda: _status_is(b, key["key"], 401), timeout=1.0, interval=0.02,
                     what="the other process refuses the revoked key")
    refused_after = time.perf_counter() - revoked
    assert await chat(a, key["key"]) == 401  # at once where it was revoked
    # one name created on both processes at once: one 201, one 409
    results = await asyncio.gather(*(call("POST", f"{g.url}/admin/tenants", ADMIN_KEY, {"name": "race"})
                                     for g in (a, b, a, b)))
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]
    print(f"served on b {served_after:.3f} s after issue; refused {refused_after:.3f} s after revoke")


async def _status_is(gateway: Process, key: str, status: int) -> bool:
    return await chat(gateway, key) == status


async def test_a_lost_store_keeps_serving_keys_and_admin_writes_are_503_until_it_is_back(
        mock: Mock, spawned: Spawn, durable_redis: DurableRedis) -> None:
    gateway = spawned(mock.url, name="a", **sections(durable_redis.url))
    assert (await call("POST", f"{gateway.url}/admin/tenants", ADMIN_KEY, {"name": "t1"}))[0] == 201
    _, key = await call("POST", f"{gateway.url}/admin/tenants/t1/keys", ADMIN_KEY, {})
    await durable_redis.kill()
    assert await chat(gateway, key["key"]) == 200
    status, body = await call("POST", f"{gateway.url}/admin/tenants", ADMIN_KEY, {"name": "t2"})
    assert status == 503 and "unavailable" in body["error"]
    assert (await call("DELETE", f"{gateway.url}/admin/keys/{key['id']}", ADMIN_KEY))[0] == 503
    assert (await call("POST", f"{gateway.url}/admin/tenants/t1/keys", ADMIN_KEY, {}))[0] == 503
    assert await chat(gateway, key["key"]) == 200
    await durable_redis.start()

    async def created() -> bool:
        status, _ = await call("POST", f"{gateway.url}/admin/tenants", ADMIN_KEY, {"name": "t2"})
        return status == 201

    await eventually(created, timeout=10, interval=0.2, what="admin writes work again")
    assert await chat(gateway, key["key"]) == 200


async def test_killing_the_store_mid_write_is_an_error_to_the_caller_never_a_half_written_tenant(
        mock: Mock, spawned: Spawn, durable_redis: DurableRedis) -> None:
    gateway = spawned(mock.url, name="a", **sections(durable_redis.url))
    answers: dict[str, int] = {}
    names = iter(range(10_000))

    async def writer() -> None:
        """Creates tenants one after another until the store fails it."""
        while True:
            name = f"t{next(names)}"
            status, _ = await call("POST", f"{gateway.url}/admin/tenants", ADMIN_KEY,
                                   {"name": name, "priority": int(name[1:]), "models": ["mock-*"]})
            answers[name] = status
            if status != 201:
                return

    writers = [asyncio.create_task(writer()) for _ in range(4)]
    await eventually(lambda: len(answers) >= 8, timeout=10, what="some writes done")
    await durable_redis.kill()
    await asyncio.wait_for(asyncio.gather(*writers), 30)
    assert set(answers.values()) <= {201, 503}, answers
    assert 201 in answers.values() and 503 in answers.values(), answers
    await durable_redis.start()
    client = redis.asyncio.from_url(durable_redis.url)
    try:
        tenants = {k.decode() for k in await client.hkeys(f"{PREFIX}store:tenants")}
        created = {k.decode() for k in await client.hkeys(f"{PREFIX}store:created")}
        version = int(await client.get(f"{PREFIX}store:version") or 0)
    finally:
        await client.aclose()
    confirmed = {name for name, status in answers.items() if status == 201}
    assert confirmed <= tenants  # every 201 is kept
    assert tenants == created  # each tenant whole: its fields and its creation time
    assert version == len(tenants)  # and its version bump, in the same script

    async def listed() -> dict[str, Any]:
        status, body = await call("GET", f"{gateway.url}/admin/tenants", ADMIN_KEY)
        return {t["name"]: t for t in body["tenants"] if t["source"] == "runtime"} if status == 200 else {}

    seen = await eventually(lambda: _all_of(listed, tenants), timeout=10, what="the view after the restart")
    for name, tenant in seen.items():
        assert tenant["priority"] == int(name[1:]) and tenant["models"] == ["mock-*"]


async def _all_of(listed: Any, names: set[str]) -> dict[str, Any]:
    seen: dict[str, Any] = await listed()
    return seen if set(seen) == names else {}


async def test_spend_rows_of_two_processes_add_up_and_wait_out_a_store_outage(
        mock: Mock, spawned: Spawn, durable_redis: DurableRedis) -> None:
    a = spawned(mock.url, name="a", **sections(durable_redis.url))
    b = spawned(mock.url, name="b", **sections(durable_redis.url))
    for gateway in (a, a, b):
        assert await chat(gateway, CLIENT_KEY) == 200
    await eventually(lambda: _requests_in(b, 3), timeout=5, interval=0.1, what="both processes' rows")
    await durable_redis.kill()
    for gateway in (a, b):  # answered while the store is down: their rows wait in memory
        assert await chat(gateway, CLIENT_KEY) == 200
    await durable_redis.start()
    await eventually(lambda: _requests_in(a, 5), timeout=10, interval=0.2, what="the rows kept through the outage")


async def _requests_in(gateway: Process, expected: int) -> bool:
    status, body = await call("GET", f"{gateway.url}/admin/spend?group_by=tenant", ADMIN_KEY)
    return status == 200 and sum(r["requests"] for r in body["data"] if r["tenant"] == "tenant-a") == expected
