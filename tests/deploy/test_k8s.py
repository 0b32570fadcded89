"""deploy/k8s: both kustomize overlays render, their objects validate offline, the Deployment fits the image and the
service, and the generated monitoring objects hold exactly what deploy/prometheus and deploy/grafana hold.

Offline: `kubectl kustomize` renders (no cluster), kubernetes-validate checks the core objects against the Kubernetes
OpenAPI schemas it ships, and the prometheus-operator objects are checked against their CRDs' published schemas kept
in tests/deploy/crds/ (each file names its source and version).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scripts import generate_k8s, image
from service.feedback.log import SHUTDOWN_FLUSH_SECONDS

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
# A current Kubernetes release that kubernetes-validate ships schemas for (pyproject.toml pins it at >= 1.37).
KUBERNETES_VERSION = "1.37"
CRD_SCHEMAS = {
    "ServiceMonitor": ROOT / "tests" / "deploy" / "crds" / "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": ROOT / "tests" / "deploy" / "crds" / "monitoring.coreos.com_prometheusrules.yaml",
}
# Workers took up to this long to start on a loaded 2-core machine; the startup probe must wait longer.
SLOWEST_START_SECONDS = 160
# kube-prometheus-stack selects ServiceMonitors and PrometheusRules by `release`, dashboards by this label.
RELEASE_LABEL = "release"


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: the overlays are rendered with `kubectl kustomize`")
    path = ROOT / "deploy" / "k8s" / "overlays" / overlay
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return tuple(document for document in yaml.safe_load_all(done.stdout) if document)


def only(overlay: str, kind: str) -> dict[str, Any]:
    found = [document for document in rendered(overlay) if document["kind"] == kind]
    assert len(found) == 1, f"{overlay}: {len(found)} objects of kind {kind}"
    return found[0]


def container(overlay: str) -> dict[str, Any]:
    containers = only(overlay, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def env(overlay: str) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(overlay)["env"]}


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the fields (kubectl's strict field validation)."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = next(doc for doc in yaml.safe_load_all(CRD_SCHEMAS[kind].read_text()) if doc)
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def crd_errors(document: dict[str, Any]) -> list[str]:
    errors = crd_validator(document["kind"]).iter_errors(document)
    return [f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}" for error in errors]


def rule_groups(files: list[Path]) -> Iterator[dict[str, Any]]:
    for path in files:
        yield from yaml.safe_load(path.read_text())["groups"]


# --- generated objects: one source of truth ------------------------------------------------------------------------


def test_generated_monitoring_objects_are_current() -> None:
    assert generate_k8s.stale() == [], "deploy/k8s/base is out of date with its sources: run `make k8s`"


def test_prometheus_rule_holds_every_group_of_the_rule_files_in_order() -> None:
    committed = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml").read_text())
    files = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    assert len(files) >= 2
    assert committed["spec"]["groups"] == list(rule_groups(files))


def test_dashboard_config_map_holds_the_dashboard_for_the_sidecar() -> None:
    config_map = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "grafana-dashboard.yaml").read_text())
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = config_map["data"].values()
    provisioned = json.loads(text)
    source = json.loads((ROOT / "deploy" / "grafana" / "classifier-service.json").read_text())
    assert provisioned["panels"] == source["panels"]
    assert provisioned["uid"] == source["uid"]
    # No import dialog fills `${DS_PROMETHEUS}` in a provisioned dashboard: a data source variable of that name does.
    assert "__inputs" not in provisioned
    variables = provisioned["templating"]["list"]
    assert variables[0]["name"] == "DS_PROMETHEUS" and variables[0]["type"] == "datasource"
    assert variables[1:] == source["templating"]["list"]


def test_service_monitor_keeps_the_series_own_endpoint_label() -> None:
    # The operator's target label `endpoint` (the port name) would otherwise rename the routes' label, which the
    # rules select on.
    monitor = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "servicemonitor.yaml").read_text())
    assert [endpoint["honorLabels"] for endpoint in monitor["spec"]["endpoints"]] == [True]
    rules = (ROOT / "deploy" / "prometheus" / "rules" / "recording.yml").read_text()
    assert 'endpoint="/predict"' in rules or "by (model, endpoint" in rules


def copy_sources(root: Path) -> None:
    for relative in (generate_k8s.RULES_DIR, generate_k8s.PROMETHEUS_CONFIG.parent, generate_k8s.DASHBOARD.parent):
        shutil.copytree(ROOT / relative, root / relative, dirs_exist_ok=True)
    (root / generate_k8s.BASE).mkdir(parents=True)


def test_regeneration_follows_a_changed_rule_file_and_is_byte_stable(tmp_path: Path) -> None:
    copy_sources(tmp_path)
    rules = tmp_path / generate_k8s.RULES_DIR
    added = {"name": "classifier-test-added", "rules": [{"record": "classifier:test:sum", "expr": "sum(up)"}]}
    (rules / "zz_added.yml").write_text(yaml.safe_dump({"groups": [added]}))
    first = generate_k8s.manifests(tmp_path)
    assert first == generate_k8s.manifests(tmp_path)
    rule = yaml.safe_load(next(m.text for m in first if m.path.name == "prometheusrule.yaml"))
    assert rule["spec"]["groups"][-1] == added
    assert rule["spec"]["groups"] == list(rule_groups(sorted(rules.glob("*.yml"))))


def test_generator_refuses_a_group_name_used_twice(tmp_path: Path) -> None:
    copy_sources(tmp_path)
    existing = next(rule_groups(generate_k8s.rule_files(tmp_path)))
    clash = {"name": existing["name"], "rules": [{"record": "classifier:test:sum", "expr": "sum(up)"}]}
    (tmp_path / generate_k8s.RULES_DIR / "zz_clash.yml").write_text(yaml.safe_dump({"groups": [clash]}))
    with pytest.raises(ValueError, match=existing["name"]):
        generate_k8s.manifests(tmp_path)


# --- schema validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_pass_kubernetes_validate_strict(overlay: str) -> None:
    core = [document for document in rendered(overlay) if document["kind"] not in CRD_SCHEMAS]
    assert {d["kind"] for d in core} >= {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"}
    for document in core:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_operator_objects_pass_their_crd_schemas(overlay: str) -> None:
    documents = [document for document in rendered(overlay) if document["kind"] in CRD_SCHEMAS]
    assert sorted(d["kind"] for d in documents) == sorted(CRD_SCHEMAS)
    for document in documents:
        assert document["apiVersion"] == "monitoring.coreos.com/v1"
        assert crd_errors(document) == [], document["kind"]


def test_validators_refuse_what_a_cluster_would_refuse() -> None:
    deployment = json.loads(json.dumps(only("prod", "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    monitor = json.loads(json.dumps(only("prod", "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert any("intervall" in error for error in crd_errors(monitor))
    rule = json.loads(json.dumps(only("prod", "PrometheusRule")))
    alert = next(r for g in rule["spec"]["groups"] for r in g["rules"] if "for" in r)
    alert["for"] = "5 minutes"
    assert any("'5 minutes' does not match" in error for error in crd_errors(rule))


# --- the Deployment fits the image and the service --------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_runs_as_the_image_user_on_a_read_only_root(overlay: str) -> None:
    pod = only(overlay, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image.USER_ID == pod["securityContext"]["runAsGroup"]
    main = container(overlay)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    # Every folder the service writes to is a writable emptyDir: the prediction log's folder, the Prometheus
    # multiprocess folder of the image's BentoML store, and /tmp; the image's CLF_DATA_DIR is the one mounted.
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    writable = {mount["mountPath"] for mount in main["volumeMounts"] if mount["name"] in empty_dirs}
    assert {image.DATA_FOLDER, image.METRICS_FOLDER, "/tmp"} <= writable
    assert env(overlay)["CLF_DATA_DIR"]["value"] == image.DATA_FOLDER
    assert "BENTOML_HOME" not in env(overlay)  # the image's store holds the models


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_the_image_make_image_tags(overlay: str) -> None:
    name, _, tag = container(overlay)["image"].rpartition(":")
    assert name.endswith(image.IMAGE)
    # dev: the image `make image` built here, loaded into the cluster; prod: a version tag pushed to a registry
    assert tag == "latest" if overlay == "dev" else re.fullmatch(r"\d+\.\d+\.\d+-[0-9a-f]{7}", tag), tag


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_and_threads_match_the_cpu_limit(overlay: str) -> None:
    main = container(overlay)
    limit = cpus(main["resources"]["limits"]["cpu"])
    workers = int(env(overlay)["CLF_WORKERS"]["value"])
    threads = int(env(overlay)["CLF_NATIVE_THREADS"]["value"])
    assert workers == limit
    assert workers * threads <= limit
    for resource in ("cpu", "memory"):
        assert resource in main["resources"]["requests"] and resource in main["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_fit_model_loading_and_termination_fits_the_flush(overlay: str) -> None:
    main = container(overlay)
    assert main["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = main["startupProbe"]
    assert startup["httpGet"]["path"] == "/livez"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1.5 * SLOWEST_START_SECONDS
    pre_stop = main["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = only(overlay, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + SHUTDOWN_FLUSH_SECONDS + 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_select_the_pods_and_the_port(overlay: str) -> None:
    pod_labels = only(overlay, "Deployment")["spec"]["template"]["metadata"]["labels"]
    (container_port,) = container(overlay)["ports"]
    service = only(overlay, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == container_port["name"]
    assert only(overlay, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    policy = only(overlay, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [port["port"] for rule in policy["ingress"] for port in rule["ports"]] == [container_port["name"]]
    assert {port["port"] for rule in policy["egress"] for port in rule["ports"]} == {5432, 53}
    monitor = only(overlay, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == [service_port["name"]]
    assert RELEASE_LABEL in monitor["metadata"]["labels"]
    assert RELEASE_LABEL in only(overlay, "PrometheusRule")["metadata"]["labels"]
    assert only(overlay, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"] == "1"


# --- the overlays -----------------------------------------------------------------------------------------------------


def test_dev_is_one_replica_on_sqlite() -> None:
    assert only("dev", "Deployment")["spec"]["replicas"] == 1
    assert "CLF_DATABASE_URL" not in env("dev")
    assert not [document for document in rendered("dev") if document["kind"] == "HorizontalPodAutoscaler"]


def test_prod_is_three_replicas_on_postgresql_with_api_keys() -> None:
    deployment = only("prod", "Deployment")
    hpa = only("prod", "HorizontalPodAutoscaler")["spec"]
    assert deployment["spec"]["replicas"] == hpa["minReplicas"] == 3
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    variables = env("prod")
    assert variables["CLF_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    # The keys file sits in a Secret volume mounted as a folder (no subPath), so that a changed Secret reaches it.
    keys_file = Path(variables["CLF_API_KEYS_FILE"]["value"])
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    secret_volumes = {volume["name"] for volume in volumes if "secret" in volume}
    (mount,) = [m for m in container("prod")["volumeMounts"] if m["name"] in secret_volumes]
    assert Path(mount["mountPath"]) == keys_file.parent and "subPath" not in mount and mount["readOnly"] is True
    # The prod patch adds the scrape's key and keeps the generated endpoint (path, interval).
    generated = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "servicemonitor.yaml").read_text())
    (endpoint,) = only("prod", "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint.pop("authorization")["credentials"]["key"] == "token"
    assert endpoint == generated["spec"]["endpoints"][0]
