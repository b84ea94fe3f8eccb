"""The metrics the gateway exports (one list for every test) and reading values out of a
/metrics text by parsing it, so an assertion fails when a metric vanishes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# family name (as the Prometheus parser names it: a counter without `_total`) -> (type, labels):
# DESIGN.md's metrics and gateway/metrics.py's.
DESIGN_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "gateway_requests": ("counter", frozenset({"tenant", "model", "route", "status"})),
    "gateway_ttfb_seconds": ("histogram", frozenset({"tenant", "model", "upstream"})),
    "gateway_stream_duration_seconds": ("histogram", frozenset({"tenant", "model", "upstream"})),
    "gateway_tokens": ("counter", frozenset({"tenant", "model", "kind"})),
    "gateway_active_streams": ("gauge", frozenset()),
    "gateway_queue_depth": ("gauge", frozenset()),
    "gateway_queue_wait_seconds": ("histogram", frozenset()),
    "gateway_ratelimited": ("counter", frozenset({"tenant", "kind"})),
    "gateway_shed": ("counter", frozenset({"reason"})),
    "gateway_upstream_retries": ("counter", frozenset({"upstream", "reason"})),
    "gateway_upstream_errors": ("counter", frozenset({"upstream", "kind"})),
    "gateway_client_disconnects": ("counter", frozenset({"tenant"})),
    "gateway_heartbeats": ("counter", frozenset()),
    "gateway_cost_usd": ("counter", frozenset({"tenant", "model"})),
    "gateway_budget_remaining_usd": ("gauge", frozenset({"tenant"})),
    "gateway_upstream_up": ("gauge", frozenset({"upstream"})),
    "gateway_midstream_recoveries": ("counter", frozenset({"route", "result"})),
    "gateway_config_reloads": ("counter", frozenset({"result"})),
    "gateway_build_info": ("gauge", frozenset({"version"})),
    "gateway_resumable_streams": ("gauge", frozenset({"state"})),
    "gateway_stream_resumes": ("counter", frozenset({"result"})),
    "gateway_models_refresh": ("counter", frozenset({"upstream", "result"})),
    "gateway_stream_output_tokens_per_second": ("histogram", frozenset({"tenant", "model"})),
    # beyond DESIGN.md, from gateway/metrics.py
    "gateway_unpriced_requests": ("counter", frozenset({"model"})),
    "gateway_ratelimit_backend_errors": ("counter", frozenset()),
    "gateway_client_errors": ("counter", frozenset({"status"})),
    "gateway_client_connections_closed": ("counter", frozenset({"reason"})),
    "gateway_target_breaker_open": ("gauge", frozenset({"upstream", "model"})),
    "gateway_tenant_active_streams": ("gauge", frozenset({"tenant"})),
}


def exported_name(family: str) -> str:
    """The name a query uses: a counter's series end in `_total`."""
    return family + "_total" if DESIGN_METRICS[family][0] == "counter" else family


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of sample `name` (as exported, e.g. `gateway_heartbeats_total`) whose labels
    include `labels`; summed when several series match. Raises AssertionError when no series
    matches, so `metric_value(...) == 0` can't pass because the metric is gone."""
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    if not values:
        raise AssertionError(f"no sample {name}{labels or ''} in the metrics")
    return float(sum(values))
