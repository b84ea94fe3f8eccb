"""`previous_response_id` can't cross tenants (gateway/response_owners.py): the gateway
remembers which tenant each response id it relayed belongs to (a JSON answer's `id`, a stream's
`response.created`) and answers another tenant's id with a 404 in the Responses shape, before
any upstream call. Memory and Redis (shared by every gateway on it, with an expiry)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
import redis.asyncio

from gateway.response_owners import KEEP_SECONDS, WATCHED_READS, MemoryOwners, StreamIdWatch
from tests._proc import eventually
from tests.conftest import CLIENT_KEY, CLIENT_KEY_B, Gateway, GatewayFactory, Mock, auth


async def create(gateway: Gateway, key: str, *, stream: bool) -> str:
    response = await gateway.client.post("/v1/responses", headers=auth(key),
                                         json={"model": "mock-1", "input": "hi", "stream": stream})
    assert response.status == 200
    if not stream:
        return str((await response.json())["id"])
    for line in (await response.read()).splitlines():
        if line.startswith(b"data:") and b'"response.created"' in line:
            return str(orjson.loads(line[5:])["response"]["id"])
    raise AssertionError("no response.created event")


async def follow_up(gateway: Gateway, key: str, previous: str) -> tuple[int, Any]:
    response = await gateway.client.post("/v1/responses", headers=auth(key), json={
        "model": "mock-1", "input": "and then?", "previous_response_id": previous})
    return response.status, await response.json()


NOT_FOUND = "previous_response_not_found"


@pytest.mark.parametrize("stream", [False, True])
async def test_another_tenants_response_id_is_a_404(gateway: Gateway, mock: Mock, stream: bool) -> None:
    theirs = await create(gateway, CLIENT_KEY, stream=stream)
    upstream_calls = len(mock.state.requests)
    status, answer = await follow_up(gateway, CLIENT_KEY_B, theirs)
    assert status == 404, answer
    assert answer == {"error": {"message": f"Previous response with id '{theirs}' not found.",
                                "type": "invalid_request_error", "code": NOT_FOUND}}
    assert len(mock.state.requests) == upstream_calls  # never asked upstream
    status, answer = await follow_up(gateway, CLIENT_KEY, theirs)  # the owner continues it
    assert status == 200, answer
    (line,) = [r for r in gateway.request_logs() if r["status"] == 404]
    assert line["tenant"] == "tenant-b"


async def test_an_id_the_gateway_never_relayed_goes_upstream(gateway: Gateway) -> None:
    status, answer = await follow_up(gateway, CLIENT_KEY_B, "resp_not_from_here")
    assert status == 200, answer


@pytest.mark.redis
async def test_with_redis_every_gateway_knows_the_owner_for_thirty_days(
        start_gateway: GatewayFactory, redis_url: str) -> None:
    prefix = f"gw-test-owners-{uuid.uuid4().hex}:"
    ratelimit = {"backend": "redis", "redis_url": redis_url, "key_prefix": prefix}
    one = await start_gateway(ratelimit=ratelimit)
    two = await start_gateway(ratelimit=ratelimit)
    theirs = await create(one, CLIENT_KEY, stream=True)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:  # a stream's id is written in the background as its first event passes
        await eventually(lambda: _is(client.get(f"{prefix}resp:{theirs}"), b"tenant-a"),
                         what="the owner in Redis")
        assert KEEP_SECONDS - 60 < await client.ttl(f"{prefix}resp:{theirs}") <= KEEP_SECONDS
    finally:
        await client.aclose()
    status, answer = await follow_up(two, CLIENT_KEY_B, theirs)
    assert status == 404 and answer["error"]["code"] == NOT_FOUND, answer
    status, answer = await follow_up(two, CLIENT_KEY, theirs)
    assert status == 200, answer
    mine = await create(two, CLIENT_KEY_B, stream=False)  # sent to Redis before the answer
    status, answer = await follow_up(one, CLIENT_KEY, mine)
    assert status == 404 and answer["error"]["code"] == NOT_FOUND, answer


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_memory_forgets_the_oldest_past_its_bound() -> None:
    owners = MemoryOwners(limit=3)
    for n in range(4):
        owners.remember(f"resp_{n}", "tenant-a")
    assert await owners.owner("resp_0") is None
    assert [await owners.owner(f"resp_{n}") for n in (1, 2, 3)] == ["tenant-a"] * 3
    expired = MemoryOwners(keep=0)
    expired.remember("resp_x", "tenant-a")
    assert await expired.owner("resp_x") is None


async def test_a_stream_is_looked_at_in_its_first_reads_only() -> None:
    created = b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1"}}\n'
    late, early = MemoryOwners(), MemoryOwners()
    watch = StreamIdWatch(late, "tenant-a")
    for _ in range(WATCHED_READS):
        watch.feed(b": ping\n")
    watch.feed(created)
    assert await late.owner("resp_1") is None
    watch = StreamIdWatch(early, "tenant-a")
    watch.feed(b"event: response.created\n")  # the event's name and its data in two reads
    watch.feed(created.split(b"\n", 1)[1])
    assert await early.owner("resp_1") == "tenant-a"


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_is_the_fail_open_decision(fail_open: bool) -> None:
    from gateway.errors import Shed
    from gateway.logs import make_logger
    from gateway.response_owners import RedisOwners

    owners = RedisOwners("redis://127.0.0.1:1/0", "gw-test:", fail_open=fail_open, logger=make_logger())
    try:
        owners.remember("resp_1", "tenant-a")  # logged, never raised
        if fail_open:
            assert await owners.owner("resp_1") is None
        else:
            with pytest.raises(Shed) as caught:
                await owners.owner("resp_1")
            assert caught.value.status == 503
    finally:
        await owners.close()
