"""`gateway_upstream_up` across a reload with `workers = 2` (prometheus-client's multiprocess
mode, where a series can't be removed): a removed upstream's series is set to 1 in every
worker, so the "circuit open" alert stops; an added upstream gets its series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import hash_key
from tests._proc import eventually
from tests.conftest import Mock, Spawn, auth, chat_body, raw_config, upstream_spec, write_toml

pytestmark = pytest.mark.redis

ADMIN_KEY = "gw-admin-secret"


def upstream(mock: Mock, name: str, models: list[str]) -> dict[str, Any]:
    """An upstream on the mock whose breaker opens at its first failure."""
    return upstream_spec(name, f"{mock.url}/v1", models=models, max_retries=0, failures_to_trip=1, cooldown_seconds=600)


def samples(text: str, name: str, key: str) -> dict[str, float]:
    return {sample.labels[key]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name}


async def test_a_reload_with_workers_sets_a_removed_upstream_to_1(
        mock: Mock, spawned: Spawn, redis_url: str, tmp_path: Path) -> None:
    sections: dict[str, Any] = {
        "ratelimit": {"backend": "redis", "redis_url": redis_url},
        "upstreams": [upstream(mock, "mock", ["mock-*"]), upstream(mock, "removed", ["gone-*"])]}
    gateway = spawned(mock.url, server={"workers": 2, "admin_key_sha256": hash_key(ADMIN_KEY)},
                      **sections)
    await eventually(lambda: '"event":"started"' in gateway.stderr()
                     and '"event":"worker_started"' in gateway.stderr(), timeout=20)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:

        async def metrics() -> str:
            async with http.get(f"{gateway.url}/metrics") as response:
                return await response.text()

        async with http.post(f"{gateway.url}/v1/chat/completions", headers=auth(),
                             json=chat_body("gone-1+status=500", stream=False)) as response:
            assert response.status >= 500
        # One worker's breaker is open: the minimum over the workers is 0.
        up = samples(await metrics(), "gateway_upstream_up", "upstream")
        assert up == {"mock": 1, "removed": 0}

        port = int(gateway.url.rsplit(":", 1)[1])
        raw = raw_config(mock.url, server={"host": "127.0.0.1", "port": port, "workers": 2,
                                           "admin_key_sha256": hash_key(ADMIN_KEY)},
                         ratelimit=sections["ratelimit"],
                         upstreams=[upstream(mock, "mock", ["mock-*"]), upstream(mock, "added", ["new-*"])])
        write_toml(tmp_path / "gateway.toml", raw)
        async with http.post(f"{gateway.url}/admin/reload", headers=auth(ADMIN_KEY)) as response:
            assert response.status == 200

        async def both_reloaded() -> bool:  # each worker applies the supervisor's SIGHUP
            return samples(await metrics(), "gateway_config_reloads_total", "result").get("ok") == 2

        await eventually(both_reloaded, what="both workers reloaded")
        up = samples(await metrics(), "gateway_upstream_up", "upstream")
        assert up == {"mock": 1, "removed": 1, "added": 1}
