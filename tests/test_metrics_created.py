"""`/metrics` carries no `*_created` series: one sample name per counter, the histogram's three."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, auth, chat_body


async def test_counters_and_histograms_export_no_created_timestamps(gateway: Gateway) -> None:
    async with gateway.client.post("/v1/chat/completions", json=chat_body(), headers=auth()) as resp:
        assert resp.status == 200
        await resp.read()
    async with gateway.client.get("/metrics") as resp:
        text = await resp.text()
    names = {f.name: {s.name for s in f.samples} for f in text_string_to_metric_families(text)}
    assert names["gateway_requests"] == {"gateway_requests_total"}
    assert names["gateway_ttfb_seconds"] == {
        "gateway_ttfb_seconds_bucket", "gateway_ttfb_seconds_count", "gateway_ttfb_seconds_sum"}
