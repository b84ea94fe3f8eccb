"""grafana/dashboard.json is a valid dashboard whose queries name real metrics.

The static tests read the JSON; the live one streams one request through
a real gateway and checks that every metric a panel queries is in its
/metrics output, so a renamed metric can't leave a panel silently empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests._live import fetch_text, live_gateway, stream_chat
from tests._metrics import DESIGN_METRICS as METRICS
from tests._metrics import exported_name

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "grafana" / "dashboard.json"
PROVISIONING = REPO / "grafana" / "provisioning"

# The metrics of DESIGN.md and gateway/metrics.py, by the name a query uses, and their labels.
DESIGN_METRICS: dict[str, set[str]] = {
    exported_name(family): set(labels) for family, (_, labels) in METRICS.items()}
# Labels Prometheus adds to every scraped series: `instance` is the replica.
TARGET_LABELS = {"instance"}
HISTOGRAMS = {"gateway_ttfb_seconds", "gateway_stream_duration_seconds",
              "gateway_queue_wait_seconds", "gateway_stream_output_tokens_per_second"}  # fmt: skip
METRIC_RE = re.compile(r"\bgateway_[a-z_]+")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels() -> list[dict[str, Any]]:
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def query_panels() -> list[dict[str, Any]]:
    return [p for p in all_panels() if p["type"] != "row"]


def exprs() -> list[str]:
    return [t["expr"] for p in query_panels() for t in p["targets"]]


def metric_base(name: str) -> str:
    """The metric family a series name belongs to (histogram series -> histogram)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return name


def referenced_metrics(expr: str) -> set[str]:
    return {metric_base(name) for name in METRIC_RE.findall(expr)}


def referenced_series(expr: str) -> set[str]:
    return set(METRIC_RE.findall(expr))


def labels_used(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in group.split(",") if label.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", selector))
    return labels


# -- the model ------------------------------------------------------------------


def test_dashboard_model_is_complete() -> None:
    dash = dashboard()
    assert dash["title"] and dash["uid"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 30
    assert dash["panels"]


def test_panels_have_ids_positions_and_queries() -> None:
    panels = all_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        pos = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= pos.keys(), panel["title"]
        assert pos["w"] > 0 and pos["h"] > 0 and 0 <= pos["x"] and pos["x"] + pos["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert METRIC_RE.search(target["expr"]), target["expr"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels():
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_queries_are_balanced() -> None:
    for expr in exprs():
        for open_, close in ("()", "{}", "[]"):
            assert expr.count(open_) == expr.count(close), expr


def test_datasource_is_a_variable_defaulting_to_the_provisioned_one() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    datasource_var = variables["datasource"]
    assert (datasource_var["type"], datasource_var["query"]) == ("datasource", "prometheus")
    for panel in query_panels():
        for ds in [panel["datasource"]] + [t.get("datasource", panel["datasource"])
                                           for t in panel["targets"]]:  # fmt: skip
            assert ds == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    (provisioned,) = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert provisioned["type"] == "prometheus"
    assert datasource_var["current"]["value"] == provisioned["uid"]
    # Every other $variable a query uses is defined.
    for expr in exprs():
        for name in re.findall(r"\$(\w+)", expr):
            assert name.startswith("__") or name in variables, name


# -- what it shows ------------------------------------------------------------


def test_queries_use_only_documented_metrics_and_labels() -> None:
    for expr in exprs():
        metrics = referenced_metrics(expr)
        assert metrics <= DESIGN_METRICS.keys(), f"{metrics - DESIGN_METRICS.keys()} in {expr}"
        allowed = set().union(TARGET_LABELS, *(DESIGN_METRICS[m] for m in metrics))
        if metrics & HISTOGRAMS:
            allowed.add("le")
        assert labels_used(expr) <= allowed, f"{labels_used(expr) - allowed} in {expr}"
        for series in referenced_series(expr):
            if series.endswith("_bucket"):
                assert "histogram_quantile" in expr, expr


def test_every_documented_metric_has_a_panel() -> None:
    used = set().union(*(referenced_metrics(e) for e in exprs()))
    assert used == DESIGN_METRICS.keys(), f"no panel for {DESIGN_METRICS.keys() - used}"


@pytest.mark.parametrize(
    ("title_words", "needles"),
    [
        (("requests", "status"), ["gateway_requests_total", "by (status)"]),
        (("ttfb", "model"), ["histogram_quantile(0.5,", "histogram_quantile(0.95,",
                             "histogram_quantile(0.99,", "gateway_ttfb_seconds_bucket",
                             "by (le, model)"]),
        (("active streams", "queue depth"), ["gateway_active_streams", "gateway_queue_depth"]),
        (("tokens per minute", "tenant"), ["gateway_tokens_total", "by (tenant"]),
        (("429",), ["gateway_ratelimited_total"]),
        (("shed",), ["gateway_shed_total"]),
        (("upstream errors", "retries"), ["gateway_upstream_errors_total",
                                          "gateway_upstream_retries_total"]),
        (("client disconnects",), ["gateway_client_disconnects_total"]),
        (("stream duration",), ["gateway_stream_duration_seconds_bucket"]),
        (("queue wait",), ["gateway_queue_wait_seconds_bucket"]),
        (("heartbeats",), ["gateway_heartbeats_total"]),
        (("cost", "tenant"), ["gateway_cost_usd_total", "by (tenant)"]),
        (("budget remaining",), ["gateway_budget_remaining_usd", "by (tenant)"]),
        (("unpriced",), ["gateway_unpriced_requests_total", "by (model)"]),
        (("upstream up",), ["gateway_upstream_up", "by (upstream)"]),
        (("target breakers", "model"), ["gateway_target_breaker_open", "by (upstream, model)"]),
        (("midstream recoveries",), ["gateway_midstream_recoveries_total", "by (route, result)"]),
        (("config reloads",), ["gateway_config_reloads_total", "by (result)"]),
        (("client connections closed",), ["gateway_client_connections_closed_total"]),
        (("by replica",), ["by (instance)"]),
        (("output tokens/s", "model"), ["gateway_stream_output_tokens_per_second_bucket",
                                        "by (le, model)"]),
        (("model-list refreshes",), ["gateway_models_refresh_total", "by (upstream, result)"]),
    ],
)  # fmt: skip
def test_required_panel_exists(title_words: tuple[str, ...], needles: list[str]) -> None:
    matching = [
        p for p in query_panels() if all(w in p["title"].lower() for w in title_words)
    ]
    assert matching, f"no panel titled with {title_words}"
    text = " ".join(t["expr"] for p in matching for t in p["targets"])
    for needle in needles:
        assert needle in text, needle


def test_every_query_follows_the_replica_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    instance = variables["instance"]
    assert instance["query"]["query"] == "label_values(gateway_build_info, instance)"
    assert (instance["includeAll"], instance["multi"], instance["allValue"]) == (True, True, ".*")
    for expr in exprs():
        for series in re.findall(r"\bgateway_[a-z_]+(?:\{[^}]*\})?", expr):
            assert 'instance=~"$instance"' in series, f"{series} in {expr}"


def test_provisioning_points_at_the_dashboard() -> None:
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards/gateway.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# -- against a live gateway ---------------------------------------------------


def exported_names(metrics_text: str) -> dict[str, str]:
    """Metric name -> type, from the TYPE lines (and bare samples) of a scrape."""
    names: dict[str, str] = {}
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names[name] = kind
        elif line and not line.startswith("#"):
            names.setdefault(re.split(r"[{ ]", line, maxsplit=1)[0], "untyped")
    return names


async def test_every_queried_metric_is_exported_by_a_live_gateway(tmp_path: Path) -> None:
    from gateway.mock import MockSettings

    async with live_gateway(tmp_path, MockSettings(words=5)) as gw:
        async with aiohttp.ClientSession() as session:
            result = await stream_chat(session, gw.url, "mock-1", gw.headers)
        assert result.status == 200
        text = await fetch_text(f"{gw.url}/metrics")

    exported = exported_names(text)
    missing = {}
    for expr in exprs():
        for metric in referenced_metrics(expr):
            if metric not in exported:
                missing[metric] = expr
    assert not missing, f"queried but not exported: {missing}"
    for metric in HISTOGRAMS:
        assert exported[metric] == "histogram", metric
    for metric in DESIGN_METRICS.keys() - HISTOGRAMS:
        assert exported[metric] == ("counter" if metric.endswith("_total") else "gauge"), metric
    # The request just made is counted under the config's tenant.
    assert re.search(r'^gateway_requests_total\{[^}]*tenant="test"', text, re.M), text
