"""Metrics and logs after real traffic: DESIGN.md's names, bounded labels, and no key anywhere."""

from __future__ import annotations

import asyncio
import re

from prometheus_client.parser import text_string_to_metric_families

from tests._metrics import DESIGN_METRICS
from tests.conftest import (
    ANTHROPIC_UPSTREAM_KEY,
    CLIENT_KEY,
    CLIENT_KEY_B,
    UPSTREAM_KEY,
    Gateway,
    auth,
    chat_body,
)

SECRETS = [CLIENT_KEY, CLIENT_KEY_B, UPSTREAM_KEY, ANTHROPIC_UPSTREAM_KEY]


async def traffic(gateway: Gateway) -> list[bytes]:
    """A bit of everything; returns every response's headers and body as bytes."""
    seen: list[bytes] = []
    requests = [
        ("/v1/chat/completions", chat_body("mock-1", stream_options={"include_usage": True}), auth()),
        ("/v1/chat/completions", chat_body("mock-1", stream=False), auth(CLIENT_KEY_B)),
        ("/v1/chat/completions", chat_body("mock-1+drop=2"), auth()),
        ("/v1/chat/completions", chat_body("mock-1+status=404"), auth()),
        ("/v1/chat/completions", chat_body("mock-1+fail=1"), auth()),
        ("/v1/chat/completions", chat_body("gpt-" + "x" * 40), auth()),
        ("/v1/chat/completions", chat_body("invented-model-123"), auth()),
        ("/v1/messages", chat_body("claude-x", max_tokens=9), {"x-api-key": CLIENT_KEY}),
        ("/v1/messages", chat_body("claude-x"), {"x-api-key": CLIENT_KEY + "-wrong"}),
        ("/api/chat/stream", chat_body("claude-x"), auth(CLIENT_KEY_B)),
    ]
    for path, body, headers in requests:
        response = await gateway.client.post(path, json=body, headers=headers)
        seen.append(str(dict(response.headers)).encode() + await response.read())
    models = await gateway.client.get("/v1/models", headers=auth())
    seen.append(str(dict(models.headers)).encode() + await models.read())
    return seen


async def test_metrics_have_the_design_names_types_and_labels(gateway: Gateway) -> None:
    await traffic(gateway)
    text = await (await gateway.client.get("/metrics")).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in DESIGN_METRICS.items():
        assert name in families, name
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    assert 'gateway_requests_total{model="mock-1",route="chat_completions",status="200",tenant="tenant-a"}' in text
    assert 'gateway_tokens_total{kind="completion",model="mock-1",tenant="tenant-a"}' in text
    assert re.search(r'gateway_ttfb_seconds_count\{model="mock-\*",tenant="tenant-a",upstream="mock"\} [1-9]', text)


async def test_labels_stay_bounded(gateway: Gateway) -> None:
    await traffic(gateway)
    text = await (await gateway.client.get("/metrics")).text()
    models = set(re.findall(r'model="([^"]*)"', text))
    assert models <= {"mock-1", "mock-*", "gpt-*", "claude-3-haiku", "claude-*", "other"}
    tenants = set(re.findall(r'tenant="([^"]*)"', text))
    assert tenants <= {"tenant-a", "tenant-b", "other"}


async def test_no_key_in_responses_logs_or_metrics(gateway: Gateway) -> None:
    responses = await traffic(gateway)
    await asyncio.sleep(0)
    metrics = await (await gateway.client.get("/metrics")).read()
    logs = gateway.log.getvalue().encode()
    assert logs.count(b'"event":"request"') >= 10
    for secret in SECRETS:
        for place, blob in [("metrics", metrics), ("logs", logs), *[("response", r) for r in responses]]:
            assert secret.encode() not in blob, f"a key leaked into {place}"


async def test_one_log_line_per_request_with_the_fields(gateway: Gateway) -> None:
    await traffic(gateway)
    logs = gateway.request_logs()
    assert len(logs) == 11
    for line in logs:
        assert {"request_id", "tenant", "route", "model", "upstream", "status", "outcome", "ttfb_ms",
                "duration_ms", "prompt_tokens", "completion_tokens", "retries", "timestamp",
                "level"} <= set(line)
    outcomes = [line["outcome"] for line in logs]
    assert outcomes.count("ok") >= 5
    assert {"upstream_error", "upstream_status", "model_not_found", "unauthorized"} <= set(outcomes)
