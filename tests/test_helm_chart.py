"""deploy/helm/llm-stream-gateway: `helm lint` and `helm template`, run by Helm's own Go
code (the helm-python-sdk test extra embeds Helm v4 as a library, no cluster needed), and
the rendered manifests checked against the Kubernetes schemas and the deploy contract.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deploy" / "helm" / "llm-stream-gateway"
GATEWAY_TOML = REPO / "deploy" / "gateway.toml"
IMAGE = "llm-stream-gateway:0.1.0"
K8S_VERSION = "1.30.0"
EVERYTHING_ON = {"ingress": {"enabled": True, "tlsSecretName": "tls"},
                 "serviceMonitor": {"enabled": True}}  # fmt: skip


def need(module: str) -> Any:
    """The validator's module; skip without it, or fail when CI is set."""
    try:
        return __import__(module)
    except ImportError:
        message = f"{module} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def lint(chart: Path) -> dict[str, Any]:
    report: dict[str, Any] = need("helm_python").lint(str(chart), strict=True, kube_version="v1.30.0")
    return report


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = need("helm_python").Chart.load(str(CHART))
    manifests = chart.render(values, name="gw", namespace="llm")
    docs = []
    for path, text in manifests.items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d is not None]
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_helm_lint_finds_nothing_to_fix() -> None:
    report = lint(CHART)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # severity 1 is info ("icon is recommended"); 2 warning, 3 error
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "chart"
    shutil.copytree(CHART, broken)
    service = broken / "templates" / "service.yaml"
    service.write_text(service.read_text().replace("{{ .Values.service.type }}", "{{ .Values.service.type"))
    report = lint(broken)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] == 3]


@pytest.mark.parametrize("values", [None, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_rendered_manifests_match_the_kubernetes_schema(values: dict[str, Any] | None) -> None:
    kubernetes_validate = need("kubernetes_validate")
    docs = render(values)
    kinds = sorted(d["kind"] for d in docs)
    expected = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    if values:
        expected = sorted([*expected, "Ingress", "ServiceMonitor"])
    assert kinds == expected
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":  # a CRD: no schema in Kubernetes itself
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deployment_runs_the_image_with_probes_secrets_and_drain() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    drain = tomllib.loads(GATEWAY_TOML.read_text())["server"]["drain_seconds"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > drain + pre_stop
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    upstream_envs = {u["api_key_env"] for u in tomllib.loads(GATEWAY_TOML.read_text())["upstreams"]}
    assert upstream_envs | {"GATEWAY_TENANTS_APP_A_KEY_SHA256"} == env.keys()
    assert all(ref["optional"] and ref["key"] == name for name, ref in env.items())
    # The ConfigMap the pod mounts is the one rendered, where the image looks.
    configmap = one(docs, "ConfigMap")
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = container["volumeMounts"]
    assert f"{mount['mountPath']}/gateway.toml" == container["args"][-1]
    # Service, PDB and HPA all point at these pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert one(docs, "Service")["spec"]["selector"].items() <= labels.items()
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the HPA owns it


def test_rendered_config_is_the_example_config_and_refuses_the_placeholder(tmp_path: Path) -> None:
    text = one(render(), "ConfigMap")["data"]["gateway.toml"]
    assert tomllib.loads(text) == tomllib.loads(GATEWAY_TOML.read_text())
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    env = {"OPENAI_API_KEY": "sk-test"}
    with pytest.raises(ConfigError, match=r"tenants\[0\]\.key_sha256"):
        load_config(path, env)
    digest = hashlib.sha256(b"k").hexdigest()
    loaded = load_config(path, {**env, "GATEWAY_TENANTS_APP_A_KEY_SHA256": digest})
    assert [u.name for u in loaded.upstreams] == ["openai"]


def test_optional_ingress_streams_without_buffering_and_servicemonitor_scrapes_each_pod() -> None:
    docs = render(EVERYTHING_ON)
    notes = one(docs, "Ingress")["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert notes["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
