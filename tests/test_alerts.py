"""deploy/prometheus/alerts.yml: promtool accepts it, its unit tests pass, and it covers
what an operator must hear about, on metrics the gateway really exports.

promtool comes from Debian's `prometheus` package; without it these skip, or fail when CI
is set (tests/_live.require_binary).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from gateway.config import load_config
from gateway.metrics import Metrics
from tests._live import require_binary

REPO = Path(__file__).resolve().parent.parent
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
SCRAPE_CONFIG = REPO / "deploy" / "prometheus.yml"
METRIC_RE = re.compile(r"\bgateway_[a-z_]+")


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported_series(tmp_path: Path) -> set[str]:
    """Every sample name the gateway's registry can produce (counters with `_total`,
    histograms with `_bucket`/`_sum`/`_count`), from the registry itself."""
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        '[[upstreams]]\nname = "u"\ndialect = "openai"\nbase_url = "http://127.0.0.1:9"\n'
        'models = ["*"]\n[[tenants]]\nname = "t"\nkey_sha256 = "' + "0" * 64 + '"\n'
    )
    metrics = Metrics(load_config(cfg, {}))
    names: set[str] = set()
    for family in metrics.registry.collect():
        if not family.name.startswith("gateway_"):
            continue
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
        }.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in rules()}


def test_the_scrape_config_loads_the_rules() -> None:
    # Without --syntax-only promtool also opens and checks every rule file it names.
    result = promtool("check", "config", str(SCRAPE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert [(SCRAPE_CONFIG.parent / f).resolve() for f in config["rule_files"]] == [ALERTS]
    (job,) = config["scrape_configs"]
    up_jobs = set(re.findall(r'up\{job="([^"]+)"', ALERTS.read_text()))
    assert up_jobs == {job["job_name"]}


def test_rules_have_severity_and_text() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_essential_alerts_are_there() -> None:
    by_metric: dict[str, set[str]] = {}
    for rule in rules():
        for name in METRIC_RE.findall(rule["expr"]):
            by_metric.setdefault(name, set()).add(rule["alert"])
    for metric in (
        "gateway_requests_total",
        "gateway_ttfb_seconds_bucket",
        "gateway_shed_total",
        "gateway_ratelimit_backend_errors_total",
        "gateway_upstream_up",
        "gateway_budget_remaining_usd",
    ):
        assert by_metric.get(metric), f"no alert on {metric}"
    exprs = {rule["alert"]: rule["expr"] for rule in rules()}
    assert "status=~\"5..\"" in exprs["GatewayHigh5xxRatio"]
    assert "histogram_quantile(0.95," in exprs["GatewaySlowTTFB"]
    assert "== 0" in exprs["GatewayUpstreamCircuitOpen"]


def test_rules_name_only_metrics_the_gateway_exports(tmp_path: Path) -> None:
    exported = exported_series(tmp_path)
    assert "gateway_requests_total" in exported and "gateway_ttfb_seconds_bucket" in exported
    for rule in rules():
        used = set(METRIC_RE.findall(rule["expr"]))
        assert used <= exported, f"{rule['alert']}: {used - exported} is not exported"
