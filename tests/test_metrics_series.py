"""`Metrics.series`: a request's labels resolved once per (tenant, model, upstream) names, its
children bound on first use (a series appears only once counted) and the same as `.labels()`."""

from __future__ import annotations

from gateway.metrics import OTHER, Metrics

from .conftest import make_config


def _series_names(metrics: Metrics) -> set[str]:
    return {s.name for family in metrics.registry.collect() for s in family.samples
            if s.name.startswith(("gateway_ttfb", "gateway_tokens", "gateway_unpriced", "gateway_cost"))}


def test_series_children_are_the_labelled_ones_and_bound_on_first_use() -> None:
    config = make_config("http://127.0.0.1:9/v1")
    metrics = Metrics(config)
    tenant, model, upstream = config.tenants[0].name, "mock-1", config.upstreams[0].name
    series = metrics.series(tenant, model, upstream)
    assert (series.tenant, series.model, series.upstream) == (tenant, model, upstream)
    assert metrics.series(tenant, model, upstream) is series
    assert _series_names(metrics) == set()  # nothing counted: no series exposed
    series.prompt_tokens.inc(3)
    assert series.prompt_tokens is metrics.tokens.labels(tenant, model, "prompt")
    assert series.ttfb is metrics.ttfb.labels(tenant, model, upstream)
    assert series.midstream_errors is metrics.upstream_errors.labels(upstream, "midstream")
    assert series.request("chat", 200) is metrics.requests.labels(tenant, model, "chat", "200")
    assert series.request("chat", 200) is not series.request("chat", 500)
    assert metrics.registry.get_sample_value(
        "gateway_tokens_total", {"tenant": tenant, "model": model, "kind": "prompt"}) == 3


def test_unknown_names_are_other_and_new_label_values_empty_the_cache() -> None:
    metrics = Metrics(make_config("http://127.0.0.1:9/v1"))
    series = metrics.series("newcomer", "invented-model", "nowhere")
    assert (series.tenant, series.model, series.upstream) == (OTHER, OTHER, OTHER)
    metrics.add_tenants(["newcomer"])
    assert metrics.series("newcomer", "invented-model", "nowhere").tenant == "newcomer"


def test_a_glob_model_is_labelled_with_its_glob() -> None:
    metrics = Metrics(make_config("http://127.0.0.1:9/v1"))
    assert metrics.series(None, "mock-1+words=50", "mock").model == "mock-*"
    assert metrics.series(None, "mock-1", "mock").model == "mock-1"
