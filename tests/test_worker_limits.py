"""`workers > 1`: `max_concurrent_streams` and `max_queue` hold for the whole gateway, all
workers together (each worker holds its exact share, `gateway/admission/share.py`), and
`/admin/tenants` shows the whole gateway's streams per tenant, whichever worker answers. A
real `workers = 2` gateway process before the mock upstream."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.admission.share import worker_share
from gateway.auth import hash_key
from gateway.config import config_from_dict
from gateway.errors import ConfigError
from tests._metrics import metric_value
from tests._proc import eventually
from tests.conftest import CLIENT_KEY, UPSTREAM_ENV, Mock, Spawn, chat_body, raw_config

ADMIN = "admin-key"
BOUND = aiohttp.ClientTimeout(total=20)


@pytest.mark.parametrize("total", [0, 1, 2, 3, 7, 1000, 5001])
@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_the_shares_add_up_to_the_limit_exactly(total: int, workers: int) -> None:
    shares = [worker_share(total, workers, i) for i in range(workers)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_fewer_streams_than_workers_is_a_config_problem() -> None:
    raw = raw_config("http://127.0.0.1:9", server={"workers": 3}, limits={"max_concurrent_streams": 2},
                     ratelimit={"backend": "redis"})
    with pytest.raises(ConfigError, match="server.workers: 3 workers need limits.max_concurrent_streams"):
        config_from_dict(raw, UPSTREAM_ENV, source="<test>")


async def _admin_streams(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/admin/tenants", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
    return next(t["active_streams"] for t in body["tenants"] if t["name"] == "tenant-a")


@pytest.mark.redis
async def test_two_workers_hold_two_streams_in_all_and_admin_counts_both(
        mock: Mock, spawned: Spawn, redis_url: str, tmp_path: Path) -> None:
    gateway = spawned(mock.url, server={"workers": 2, "admin_key_sha256": hash_key(ADMIN)},
                      limits={"max_concurrent_streams": 2, "max_queue": 0},
                      ratelimit={"backend": "redis", "redis_url": redis_url,
                                 "key_prefix": f"gw-test-worker-limits-{os.getpid()}:"})
    await eventually(lambda: '"event":"started"' in gateway.stderr()
                     and '"event":"worker_started"' in gateway.stderr(), timeout=20, what="both workers")
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    # Fresh connections, so the kernel spreads them over both workers; each stream holds its
    # slot (the upstream drips a byte every 5 s) until the client closes it.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                     timeout=BOUND) as http:
        responses = await asyncio.gather(*(
            http.post(f"{gateway.url}/v1/chat/completions", headers=headers,
                      json=chat_body("mock-1+drip=5", stream=True)) for _ in range(8)))
        try:
            statuses = sorted(r.status for r in responses)
            admitted = statuses.count(200)
            # Never more than the gateway's 2, whatever the kernel's spread; at least 1 (the
            # first stream on either worker); every other one shed (max_queue = 0).
            assert 1 <= admitted <= 2 and statuses == [200] * admitted + [503] * (8 - admitted), statuses
            for _ in range(6):  # any worker answers with the whole gateway's count
                assert await _admin_streams(http, gateway.url) == admitted

            async def active() -> float:
                async with http.get(f"{gateway.url}/metrics") as r:
                    return metric_value(await r.text(), "gateway_active_streams")
            await eventually(lambda: _equal(active(), admitted), what="gateway_active_streams")
        finally:
            for response in responses:
                response.close()
        await eventually(lambda: _equal(_admin_streams(http, gateway.url), 0), what="streams released")


async def _equal(value: Any, expected: float) -> bool:
    return bool(await value == expected)
