"""``deploy/kubernetes``: every manifest and both kustomize builds validated offline.

Core objects are checked against the Kubernetes OpenAPI schemas that ``kubernetes-validate``
ships (strict: unknown fields are errors). The ServiceMonitor is a CRD the package has no
schema for, so it is checked structurally (and against the Service it must select).
``kubectl kustomize`` builds the base and the example overlay; kubectl is required under CI.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.shared import DEPLOY, daemon_metric_names, require_tool, settings_names

K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
# The oldest Kubernetes release still in EKS standard support when this was written, and the
# newest schema the package ships: manifests must be valid on both.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CRD_GROUPS = ("monitoring.coreos.com/",)

Doc = dict[str, Any]


def load_all(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def kustomize(directory: Path) -> tuple[Doc, ...]:
    kubectl = require_tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def one(docs: tuple[Doc, ...] | list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def manifest_files() -> list[Path]:
    files = sorted(K8S.rglob("*.yaml"))
    return [
        p for p in files if p.name != "kustomization.yaml" and "prometheus-adapter" not in p.parts
    ]


def is_crd(doc: Doc) -> bool:
    return str(doc["apiVersion"]).startswith(CRD_GROUPS)


def validate(doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_schema_valid(path: Path, version: str) -> None:
    for doc in load_all(path):
        if not is_crd(doc):
            validate(doc, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_kustomize_build_is_schema_valid(directory: Path, version: str) -> None:
    docs = kustomize(directory)
    kinds = sorted(d["kind"] for d in docs)
    expected = [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    if directory == OVERLAY:
        expected = sorted([*expected, "Namespace"])
    assert kinds == expected
    for doc in docs:
        if not is_crd(doc):
            validate(doc, version)


def test_the_validator_rejects_a_broken_deployment() -> None:
    deployment = one(kustomize(BASE), "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pat"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, K8S_VERSIONS[0])
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, K8S_VERSIONS[0])


# --- what the daemon needs -------------------------------------------------------------------


def config(docs: tuple[Doc, ...]) -> dict[str, str]:
    data: dict[str, str] = one(docs, "ConfigMap")["data"]
    return data


def container(docs: tuple[Doc, ...]) -> Doc:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: Doc = containers[0]
    return c


def port_of(c: Doc, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    return int(ports[name])


def workers(c: Doc) -> int:
    args = c["args"]
    assert args[0] == "serve"
    return int(args[args.index("--workers") + 1])


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_settings_are_real_variables_and_ports_match_them(directory: Path) -> None:
    docs = kustomize(directory)
    c = container(docs)
    cfg = config(docs)
    secret_vars = {e["name"] for e in c["env"]}
    assert set(cfg) | secret_vars <= settings_names()
    # The ConfigMap the Deployment reads is the generated one (hash suffix followed).
    assert c["envFrom"][0]["configMapRef"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    assert cfg["NOVAVOICE_LISTEN"] == f"0.0.0.0:{port_of(c, 'carrier')}"
    assert cfg["NOVAVOICE_ADMIN_LISTEN"] == f"0.0.0.0:{port_of(c, 'admin')}"
    for var in secret_vars:
        ref = next(e for e in c["env"] if e["name"] == var)["valueFrom"]["secretKeyRef"]
        assert ref["key"] == var and ref["optional"] is True


def test_probes_use_the_admin_port() -> None:
    c = container(kustomize(OVERLAY))
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}


def prestop_seconds(c: Doc) -> float:
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return float(command[1])


def test_grace_period_covers_prestop_plus_drain() -> None:
    docs = kustomize(OVERLAY)
    c = container(docs)
    drain = int(config(docs)["DRAIN_TIMEOUT_MS"]) / 1000
    grace = one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > prestop_seconds(c) + drain


def test_one_worker_per_cpu_and_guaranteed_resources() -> None:
    c = container(kustomize(OVERLAY))
    res = c["resources"]
    assert res["requests"] == res["limits"]
    assert int(res["requests"]["cpu"]) == workers(c) >= 1


def test_pod_runs_unprivileged_with_a_read_only_root() -> None:
    docs = kustomize(OVERLAY)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/tmp" in mounts


def test_service_account_is_annotated_for_irsa_and_used() -> None:
    docs = kustomize(OVERLAY)
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_the_pods() -> None:
    docs = kustomize(OVERLAY)
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert selects(svc["spec"]["selector"], pod_labels), svc["metadata"]["name"]
    assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], pod_labels)


def test_carrier_service_is_an_nlb_that_outlasts_the_drain() -> None:
    docs = kustomize(OVERLAY)
    svc = one(docs, "Service", "novavoice")
    c = container(docs)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["carrier"]  # never admin
    notes = svc["metadata"]["annotations"]
    attributes = dict(
        kv.split("=", 1)
        for kv in notes[
            "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"
        ].split(",")
    )
    drain = int(config(docs)["DRAIN_TIMEOUT_MS"]) / 1000
    assert int(attributes["deregistration_delay.timeout_seconds"]) >= prestop_seconds(c) + drain
    assert attributes["deregistration_delay.connection_termination.enabled"] == "false"
    listener = notes["service.beta.kubernetes.io/aws-load-balancer-listener-attributes.TLS-443"]
    assert int(listener.split("=")[1]) >= 350  # never shorter than the NLB default
    assert notes["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"].startswith("arn:aws:acm:")


def test_network_policy_keeps_the_admin_port_private() -> None:
    policy = one(kustomize(OVERLAY), "NetworkPolicy")["spec"]
    assert "Ingress" in policy["policyTypes"]
    admin_rules = [
        rule for rule in policy["ingress"] if any(p["port"] == "admin" for p in rule["ports"])
    ]
    assert len(admin_rules) == 1
    sources = admin_rules[0]["from"]
    assert sources == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # Every other rule names its ports, and none of them is the admin port (by name or number).
    for rule in policy["ingress"]:
        if rule is not admin_rules[0]:
            assert rule["ports"] and all(p["port"] in ("carrier", 8080) for p in rule["ports"])


def test_service_monitor_scrapes_the_admin_service() -> None:
    docs = kustomize(OVERLAY)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    targets = [
        s
        for s in docs
        if s["kind"] == "Service"
        and selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert [t["metadata"]["name"] for t in targets] == ["novavoice-admin"]
    port_names = {p["name"] for p in targets[0]["spec"]["ports"]}
    assert [e["port"] for e in spec["endpoints"]] == ["admin"]
    assert "admin" in port_names and spec["endpoints"][0]["path"] == "/metrics"
    assert targets[0]["spec"]["ports"][0]["targetPort"] == "admin"
    assert monitor["metadata"]["namespace"] == one(docs, "Deployment")["metadata"]["namespace"]


def test_autoscaling_on_active_calls_through_the_adapter_rule() -> None:
    docs = kustomize(OVERLAY)
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    [metric] = hpa["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    target = float(metric["pods"]["target"]["averageValue"])
    per_pod = workers(container(docs)) * int(config(docs)["MAX_CALLS"])
    assert 0 < target < per_pod  # room left to absorb a burst while pods start
    assert hpa["minReplicas"] >= 2  # the PDB's maxUnavailable: 1 leaves one pod serving

    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    [rule] = adapter["rules"]["custom"]
    assert rule["name"]["as"] == name
    series = rule["seriesQuery"].split("{")[0]
    assert series in daemon_metric_names()
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert rule["metricsQuery"] == "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
