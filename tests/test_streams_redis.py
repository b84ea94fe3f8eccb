"""Resumable streams across processes: two `llm-gateway serve` processes sharing a private
Redis (`[streams] backend = "redis"`); a resume through the other one gets exactly the rest.
Redis killed or paused mid-stream: local subscribers finish, a resume elsewhere fails cleanly
(an error event or a 404), never hangs."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from gateway.mock.shapes import answer_words
from tests.conftest import Mock, Process, Spawn, auth, chat_body
from tests.test_streams_http import parse, text_of

if TYPE_CHECKING:
    from tests.conftest_redis import RedisProcess

pytestmark = pytest.mark.redis
BOUND = aiohttp.ClientTimeout(total=30)


def pair(spawned: Spawn, mock: Mock, redis_url: str) -> tuple[Process, Process]:
    sections: dict[str, Any] = {"ratelimit": {"redis_url": redis_url}, "streams": {"backend": "redis"},
                                "server": {"heartbeat_seconds": 0.5}}
    return (spawned(mock.url, name="a", **sections), spawned(mock.url, name="b", **sections))


async def create(session: aiohttp.ClientSession, gateway: Process, body: dict[str, Any]) -> str:
    async with session.post(f"{gateway.url}/api/chat/streams", json=body, headers=auth()) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["url"])


async def first_events(session: aiohttp.ClientSession, url: str, count: int) -> bytes:
    """Read until `count` events arrived, then drop the connection (a cut)."""
    got = b""
    async with session.get(url) as response:
        while got.count(b"\nid: ") + got.startswith(b"id: ") < count or not got.endswith(b"\n\n"):
            got += await response.content.readuntil(b"\n\n")
    return got


async def whole(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
                ) -> tuple[int, bytes]:
    async with session.get(url, headers=headers or {}) as response:
        return response.status, await response.read()


async def test_a_resume_through_another_process_gets_exactly_the_rest(
    mock: Mock, spawned: Spawn, redis_process: RedisProcess,
) -> None:
    a, b = pair(spawned, mock, redis_process.url)
    async with aiohttp.ClientSession(timeout=BOUND) as session:
        path = await create(session, a, chat_body("mock-1+tps=20,words=30", content="go on"))
        head = parse(await first_events(session, a.url + path, 5))
        assert [e[0] for e in head] == ["1", "2", "3", "4", "5"]
        status, raw = await whole(session, b.url + path, {"Last-Event-ID": "5"})
        assert status == 200
        rest = parse(raw)
        assert [e[0] for e in rest] == [str(i) for i in range(6, 6 + len(rest))]
        assert rest[-1][1] == "done"
        assert text_of(head + rest).split() == answer_words("go on", 30)
        _, replay = await whole(session, b.url + path)  # and from the start, through B too
        assert parse(replay) == head + rest
        # the GET form: the browser's reconnect lands on the other replica
        form = "/api/chat/stream?messages=" + '[{"role":"user","content":"more"}]' + "&model=mock-1%2Btps%3D20"
        async with session.get(a.url + form, headers=auth()) as response:
            got = await response.content.readuntil(b"\n\n")  # retry:
            got = await response.content.readuntil(b"\n\n") + await response.content.readuntil(b"\n\n")
        first = parse(got)
        last_id = first[-1][0]
        assert last_id is not None and last_id.endswith(".2")
        _, raw = await whole(session, b.url + form, {**auth(), "Last-Event-ID": last_id})
        assert text_of(first + parse(raw)).split() == answer_words("more", 12)


async def test_redis_killed_mid_stream_local_subscribers_finish_a_remote_resume_fails_cleanly(
    mock: Mock, spawned: Spawn, redis_process: RedisProcess,
) -> None:
    a, b = pair(spawned, mock, redis_process.url)
    async with aiohttp.ClientSession(timeout=BOUND) as session:
        path = await create(session, a, chat_body("mock-1+tps=10,words=20", content="keep going"))
        async with session.get(a.url + path) as local:
            got = await local.content.readuntil(b"event: message")
            await redis_process.kill()
            got += await local.read()
        events = parse(got)
        assert events[-1][1] == "done" and text_of(events).split() == answer_words("keep going", 20)
        status, raw = await asyncio.wait_for(whole(session, b.url + path, {"Last-Event-ID": "1"}), 20)
        assert status == 404 or parse(raw)[-1][1] == "error"


async def test_redis_paused_mid_stream_a_remote_tail_ends_with_an_error_not_a_hang(
    mock: Mock, spawned: Spawn, redis_process: RedisProcess,
) -> None:
    a, b = pair(spawned, mock, redis_process.url)
    assert redis_process.child is not None
    async with aiohttp.ClientSession(timeout=BOUND) as session:
        path = await create(session, a, chat_body("mock-1+tps=10,words=30", content="paused"))
        async with session.get(a.url + path) as local, session.get(b.url + path) as remote:
            assert (local.status, remote.status) == (200, 200)
            tail = b""
            while b"event: message" not in tail:  # B tails it through Redis
                tail += await remote.content.readany()
            redis_process.child.send(signal.SIGSTOP)
            try:
                tail += await asyncio.wait_for(remote.content.read(), 20)
                got = await asyncio.wait_for(local.content.read(), 20)
            finally:
                redis_process.child.send(signal.SIGCONT)
        remote_events = parse(tail)
        assert remote_events and remote_events[-1][1] == "error", tail
        assert remote_events[-1][2]["code"] == 503
        events = parse(got)
        assert events and events[-1][1] == "done", got
        assert text_of(events).split() == answer_words("paused", 30)
        # once Redis is back, a resume elsewhere still never gets a stream with a gap
        status, raw = await asyncio.wait_for(whole(session, b.url + path, {"Last-Event-ID": "1"}), 20)
        assert status == 404 or parse(raw)[-1][1] == "error"


async def test_delete_through_another_process_cancels_the_generation(
    mock: Mock, spawned: Spawn, redis_process: RedisProcess,
) -> None:
    import json

    from tests.conftest import CLIENT_KEY_B

    a, b = pair(spawned, mock, redis_process.url)
    async with aiohttp.ClientSession(timeout=BOUND) as session:
        path = await create(session, a, chat_body("mock-1+tps=20,words=400"))
        async with session.get(a.url + path) as local:
            got = await local.content.readuntil(b"event: message")
            async with session.delete(b.url + path, headers=auth(CLIENT_KEY_B)) as other:
                assert other.status == 404
            async with session.delete(b.url + path, headers=auth()) as mine:
                assert mine.status == 204, await mine.text()
            got += await asyncio.wait_for(local.content.read(), 20)
    events = parse(got)
    assert events[-1][1] == "error" and events[-1][2]["code"] == 499
    lines = [json.loads(line) for line in a.stderr().splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x.get("event") == "generation"]
    assert line["outcome"] == "cancelled" and 0 < line["completion_tokens"] < 400


async def test_a_subscriber_through_another_process_keeps_the_generation_alive(
    mock: Mock, spawned: Spawn, redis_process: RedisProcess,
) -> None:
    import json

    sections: dict[str, Any] = {"ratelimit": {"redis_url": redis_process.url},
                                "streams": {"backend": "redis", "abandon_seconds": 1},
                                "server": {"heartbeat_seconds": 0.5}}
    a, b = spawned(mock.url, name="a", **sections), spawned(mock.url, name="b", **sections)
    async with aiohttp.ClientSession(timeout=BOUND) as session:
        path = await create(session, a, chat_body("mock-1+tps=10,words=30", content="watched"))
        status, raw = await whole(session, b.url + path)  # about 3 s: longer than abandon_seconds
    assert status == 200
    events = parse(raw)
    assert events[-1][1] == "done" and text_of(events).split() == answer_words("watched", 30)
    lines = [json.loads(line) for line in a.stderr().splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x.get("event") == "generation"]
    assert line["outcome"] == "ok" and line["subscribers"] == 0  # its only watcher was elsewhere
