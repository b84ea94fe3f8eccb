"""Prometheus accepts what the gateway exports and what the dashboard asks.

`promtool` lints a live /metrics scrape, the deployment's scrape config and
every dashboard query; a real `prometheus` scrapes a live gateway and answers
every dashboard query over its HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests._live import (
    REPO,
    LiveGateway,
    fetch_text,
    free_port,
    live_gateway,
    require_binary,
    run_process,
    stream_chat,
)

pytestmark = pytest.mark.prometheus

DASHBOARD = REPO / "grafana" / "dashboard.json"
SCRAPE_WAIT = 30.0


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) with Grafana's variables replaced by plain values."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\$__(rate_)?interval", "1m", target["expr"])
            expr = re.sub(r"\$\w+", ".*", expr)  # $tenant, $model: "All"
            out.append((panel["title"], expr))
    return out


async def make_traffic(gw: LiveGateway) -> None:
    async with aiohttp.ClientSession() as session:
        result = await stream_chat(session, gw.url, "mock-1", gw.headers)
        assert result.status == 200
        # A refused request too, so some series carry an error status.
        async with session.post(
            f"{gw.url}/v1/chat/completions", json={}, headers={"Authorization": "Bearer nope"}
        ) as resp:
            assert resp.status == 401


# -- promtool ------------------------------------------------------------------


async def test_promtool_accepts_live_metrics(tmp_path: Path) -> None:
    require_binary("promtool")
    from gateway.mock import MockSettings

    async with live_gateway(tmp_path, MockSettings(words=5)) as gw:
        await make_traffic(gw)
        text = await fetch_text(f"{gw.url}/metrics")
    assert "gateway_requests_total{" in text
    result = await asyncio.to_thread(promtool, "check", "metrics", stdin=text)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


def test_promtool_accepts_the_deploy_scrape_config() -> None:
    result = promtool("check", "config", "--syntax-only", str(REPO / "deploy" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}:value", "expr": expr}
                    for i, (_title, expr) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# -- a real Prometheus scraping a real gateway ----------------------------------


async def query(session: aiohttp.ClientSession, base: str, expr: str) -> dict[str, Any]:
    async with session.get(
        f"{base}/api/v1/query", params={"query": expr}, timeout=aiohttp.ClientTimeout(total=5)
    ) as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_prometheus_scrapes_the_gateway_and_answers_the_dashboard(
    tmp_path: Path,
) -> None:
    prometheus = require_binary("prometheus")
    from gateway.mock import MockSettings

    async with live_gateway(tmp_path, MockSettings(words=5)) as gw:
        await make_traffic(gw)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "llm-gateway",
                    "static_configs": [{"targets": [f"127.0.0.1:{gw.port}"]}],
                }
            ],
        }
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        argv = [
            prometheus,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        log = tmp_path / "prometheus.log"
        base = f"http://127.0.0.1:{port}"
        async with run_process(argv, log, cwd=tmp_path) as process:
            async with aiohttp.ClientSession() as session:
                result: list[Any] = []

                async def scraped() -> bool:
                    nonlocal result
                    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                        body = await query(session, base, "gateway_requests_total")
                        result = body.get("data", {}).get("result", [])
                    return bool(result)

                try:
                    await process.ready(scraped, what="gateway_requests_total scraped", timeout=SCRAPE_WAIT)
                except RuntimeError as exc:
                    pytest.fail(str(exc))
                labels = {series["metric"]["tenant"] for series in result}
                assert "test" in labels

                for title, expr in dashboard_queries():
                    body = await query(session, base, expr)
                    assert body["status"] == "success", (title, expr, body)
