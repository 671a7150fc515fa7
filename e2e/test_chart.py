"""The Helm chart, checked with a real helm and against the real kube-apiserver.

helm is built from the Go module proxy (e2e/harness/helm.py) unless cached: these tests never skip
for want of it. Rendered objects are validated with a server-side dry run, and the chart's
RBAC is applied for real and probed with `kubectl auth can-i` as its ServiceAccount.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.harness import ROOT, chartdoc
from e2e.harness.helm import build_helm, helm_path
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack
from vaultsync import GROUP

CHART = ROOT / "charts" / "vaultsync"
ADDRESS = "https://openbao.openbao.svc:8200"

# A cold helm build happens inside the first test that needs it and takes minutes.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600 if helm_path().is_file() else 2400)]


def _crd_plurals() -> list[str]:
    crds = [yaml.safe_load(path.read_text()) for path in (ROOT / "crds").glob("*.yaml")]
    return sorted(c["spec"]["names"]["plural"] for c in crds if c["spec"]["group"] == GROUP)


# What the operator needs, cluster-wide: (verb, resource, subresource).
NEEDED: list[tuple[str, str, str]] = [
    *(
        (verb, f"{plural}.{GROUP}", "")
        for plural in _crd_plurals()
        for verb in ("get", "list", "watch", "patch")
    ),
    *(("patch", f"{plural}.{GROUP}", "status") for plural in _crd_plurals()),
    *((verb, "secrets", "") for verb in ("get", "list", "watch", "create", "update", "delete")),
    ("create", "serviceaccounts", "token"),
    ("create", "events", ""),
    *((verb, "namespaces", "") for verb in ("list", "watch")),
    *((verb, "customresourcedefinitions.apiextensions.k8s.io", "") for verb in ("list", "watch")),
    # Rolling restarts: read targets, list opted-in workloads, server-side apply our annotations.
    *(
        (verb, f"{plural}.apps", "")
        for plural in ("deployments", "statefulsets", "daemonsets")
        for verb in ("get", "list", "patch")
    ),
]
ROLLOUTS: list[tuple[str, str, str]] = [
    (verb, "rollouts.argoproj.io", "") for verb in ("get", "list", "patch")
]
"""Granted only with rbac.argoRollouts=true."""

# What it must not be able to do.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("delete", "namespaces", ""),
    ("create", "namespaces", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", ""),
    ("impersonate", "users", ""),
    ("create", "serviceaccounts", ""),
    ("get", "serviceaccounts", ""),
    ("create", "pods", ""),
    ("create", "pods", "exec"),
    ("get", "configmaps", ""),
    ("delete", "deployments.apps", ""),
    ("update", "deployments.apps", ""),
    ("create", "deployments.apps", ""),
    ("watch", "deployments.apps", ""),  # listed on demand, never watched
    ("delete", "statefulsets.apps", ""),
    ("update", "daemonsets.apps", ""),
    ("patch", "deployments.apps", "scale"),
    ("patch", "replicasets.apps", ""),
    ("delete", "pods", ""),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", ""),
    # Never writes spec, never creates or deletes what users declare.
    ("create", f"vaultsecrets.{GROUP}", ""),
    ("update", f"vaultsecrets.{GROUP}", ""),
    ("delete", f"vaultsecrets.{GROUP}", ""),
    ("delete", f"vaultpolicies.{GROUP}", ""),
    ("update", f"vaultsecrets.{GROUP}", "status"),
    # Unused, so not granted (the e2e suite runs the operator with exactly this role).
    ("patch", "secrets", ""),
    ("patch", "events", ""),
    ("create", "events.events.k8s.io", ""),
    ("get", "namespaces", ""),
]


@pytest.fixture(scope="module")
def helm() -> Path:
    return build_helm()


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(
    helm: Path, namespace: str, *sets: str, release: str = "vaultsync", crds: bool = False
) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    args += [arg for value in sets for arg in ("--set", value)]
    if crds:
        args.append("--include-crds")
    out = run_helm(helm, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def aggregated(obj: dict[str, Any]) -> bool:
    """One of the ClusterRoles the chart adds to the built-in view/edit/admin roles."""
    labels = obj["metadata"].get("labels") or {}
    return obj["kind"] == "ClusterRole" and any(key.startswith(AGGREGATE) for key in labels)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The operator's objects by kind: the aggregated user roles left out (see aggregated)."""
    objects = [obj for obj in objects if not aggregated(obj)]
    kinds = [obj["kind"] for obj in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {obj["kind"]: obj for obj in objects}


@pytest.fixture
def namespace(stack: Stack) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    stack.cp.kubectl("create", "namespace", name)
    yield name
    stack.cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --------------------------------------------------------------------------- no cluster


def test_chart_crds_are_byte_identical_to_generated_crds() -> None:
    generated = {path.name: path.read_bytes() for path in (ROOT / "crds").glob("*.yaml")}
    shipped = {path.name: path.read_bytes() for path in (CHART / "crds").iterdir()}
    assert generated, "no CRDs in crds/"
    assert sorted(shipped) == sorted(generated), "run `make crds`"
    for name, data in generated.items():
        assert shipped[name] == data, f"charts/vaultsync/crds/{name} differs: run `make crds`"


def test_helm_lint(helm: Path) -> None:
    run_helm(helm, "lint", "--strict", str(CHART))
    run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--set",
        f"defaultConnection.address={ADDRESS}",
        "--set",
        "serviceMonitor.enabled=true",
    )
    run_helm(helm, "lint", "--strict", str(CHART), "--set", "sharding.replicas=3")


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicas=-1", "replicas"),
        ("defaultConnection.address=vault:8200", "address"),
        ("config.workers=0", "workers"),
        ("config.maxBackoff=soon", "maxBackoff"),
        ("config.minBackoff=0", "minBackoff"),
        ("config.auditFileDirs={logs}", "auditFileDirs"),
        ("rbac.argoRollouts=maybe", "argoRollouts"),
        ("config.logFormat=xml", "logFormat"),
        ("config.resyncInterval=0", "resyncInterval"),
        ("config.namespace=Not_A_Name", "namespace"),
        ("podDisruptionBudget.maxUnavailable=0", "maxUnavailable"),
        ("networkPolicy.vault.ports={0}", "ports"),
        ("topologySpreadConstraints[0].maxSkew=1", "topologyKey"),
        ("extraVolumeMounts[0].name=x", "mountPath"),
        ("extraEnv[0].name=X,extraEnv[0].value=3", "value"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("sharding.replicas=-1", "/sharding/replicas"),
        ("sharding.shards=0", "shards"),
        ("sharding.leaseDuration=2", "leaseDuration"),
        ("sharding.leaseDuration=2.5", "leaseDuration"),
        ("sharding.peering=true", "peering"),
        ("typo=1", "typo"),
    ],
)
def test_schema_rejects_bad_values(helm: Path, value: str, complaint: str) -> None:
    args = ["template", "vaultsync", str(CHART), "--set", value]
    result = run_helm(helm, *args, check=False)
    assert result.returncode != 0, f"--set {value} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_default_render(helm: Path) -> None:
    objects = by_kind(render(helm, "vaultsync-system"))
    assert sorted(objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "vaultsync:0.1.0"
    assert container["args"] == [
        "--standalone",
        "--liveness=http://0.0.0.0:8081/healthz",
        "--readiness=http://0.0.0.0:8082/readyz",
        "--log-format=plain",
    ]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {name: item.get("value") for name, item in env.items() if name != "POD_NAMESPACE"} == {
        "VAULTSYNC_WORKERS": "32",
        "VAULTSYNC_MIN_BACKOFF": "5",
        "VAULTSYNC_MAX_BACKOFF": "300",
        "VAULTSYNC_METRICS_PORT": "8080",
        "VAULTSYNC_AUDIT_FILE_DIRS": "/vault/audit/",
        "VAULTSYNC_RESYNC_INTERVAL": "60",
        "VAULTSYNC_PEERING_LIFETIME": "60",
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http-metrics": 8080, "http-health": 8081, "http-ready": 8082}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-ready"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    service = objects["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"
    for obj in objects.values():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "vaultsync"
        assert labels["app.kubernetes.io/instance"] == "vaultsync"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    granted = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames/URLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.update((group, resource, verb) for verb in rule["verbs"])
    return granted


def _expected(checks: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    expected = set()
    for verb, resource, subresource in checks:
        name, _, group = resource.partition(".")
        expected.add((group, f"{name}/{subresource}" if subresource else name, verb))
    return expected


def test_cluster_role_is_exactly_what_the_operator_needs(helm: Path) -> None:
    granted = _granted(by_kind(render(helm, "vaultsync-system"))["ClusterRole"])
    assert granted == _expected(NEEDED)
    assert not any("*" in item for triple in granted for item in triple)


def test_argo_rollouts_are_granted_only_when_asked(helm: Path) -> None:
    role = by_kind(render(helm, "vaultsync-system", "rbac.argoRollouts=true"))["ClusterRole"]
    assert _granted(role) == _expected(NEEDED + ROLLOUTS)


def test_replicas_meet_in_leases_one_works_the_others_stand_by(helm: Path) -> None:
    objects = by_kind(render(helm, "vaultsync-system", "replicas=2"))
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--peering=vaultsync" in container["args"]
    assert "--standalone" not in container["args"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["VAULTSYNC_PEERING_LIFETIME"]["value"] == "60"
    assert _granted(objects["ClusterRole"]) == _expected(NEEDED)  # Leases: a Role of their own
    role, binding = objects["Role"], objects["RoleBinding"]
    assert role["rules"] == [LEASES]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "vaultsync-system"


def test_service_monitor_is_optional(helm: Path) -> None:
    assert "ServiceMonitor" not in by_kind(render(helm, "ops"))
    objects = by_kind(render(helm, "ops", "serviceMonitor.enabled=true"))
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    service = objects["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_default_connection_render(helm: Path) -> None:
    objects = by_kind(
        render(
            helm,
            "ops",
            f"defaultConnection.address={ADDRESS}",
            "defaultConnection.caCertSecretRef.name=vault-ca",
        )
    )
    connection = objects["VaultConnection"]
    assert connection["metadata"]["name"] == "default"
    assert "namespace" not in connection["metadata"]
    assert connection["spec"] == {
        "address": ADDRESS,
        "timeoutSeconds": 10,
        "caCertSecretRef": {"namespace": "ops", "name": "vault-ca", "key": "ca.crt"},
    }


# --------------------------------------------------------------------------- values, extras, HA


def container_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str | None]:
    return {item["name"]: item.get("value") for item in container["env"]}


def test_chart_readme_is_current_and_describes_every_value() -> None:
    values = (CHART / "values.yaml").read_text()
    assert chartdoc.undocumented(values) == [], "every value needs a comment in values.yaml"
    assert chartdoc.main(["--check"]) == 0, "run `make chart-readme`"
    readme = (CHART / "README.md").read_text()
    for row in chartdoc.rows(values):
        assert f"`{row.key}`" in readme


def _operator_settings() -> set[str]:
    """Every VAULTSYNC_* variable the operator's code reads."""
    names: set[str] = set()
    for path in (ROOT / "operator" / "vaultsync").rglob("*.py"):
        names.update(re.findall(r'"(VAULTSYNC_[A-Z_]+)"', path.read_text()))
    return names


# Each operator setting, the value that sets it, and where it shows in the container.
SETTINGS: dict[str, tuple[str, str]] = {
    "VAULTSYNC_WORKERS": ("config.workers=7", "env:7"),
    "VAULTSYNC_MIN_BACKOFF": ("config.minBackoff=2", "env:2"),
    "VAULTSYNC_MAX_BACKOFF": ("config.maxBackoff=99", "env:99"),
    "VAULTSYNC_METRICS_PORT": ("config.metricsPort=9100", "env:9100"),
    "VAULTSYNC_AUDIT_FILE_DIRS": ("config.auditFileDirs={/a,/b}", "env:/a,/b"),
    "VAULTSYNC_RESYNC_INTERVAL": ("config.resyncInterval=30", "env:30"),
    "VAULTSYNC_PEERING_LIFETIME": ("config.peeringLifetime=15", "env:15"),
    "VAULTSYNC_NAMESPACE": ("config.namespace=vault-admin", "env:vault-admin"),
    "VAULTSYNC_LOG_FORMAT": ("config.logFormat=json", "arg:--log-format=json"),
    "VAULTSYNC_LEASE_DURATION": ("sharding.replicas=2,sharding.leaseDuration=20", "env:20"),
}


def test_every_operator_setting_is_a_chart_value(helm: Path) -> None:
    missing = _operator_settings() - set(SETTINGS)
    assert not missing, f"settings the chart cannot set: {sorted(missing)} (add a value)"
    container = container_of(render(helm, "ops", *(value for value, _ in SETTINGS.values())))
    env = env_of(container)
    for name, (value, where) in SETTINGS.items():
        kind, _, expected = where.partition(":")
        if kind == "env":
            assert env.get(name) == expected, (value, env.get(name))
        else:
            assert expected in container["args"], (value, container["args"])


def test_extra_args_env_and_volumes(helm: Path) -> None:
    container = container_of(
        render(
            helm,
            "ops",
            "extraArgs={--priority=5}",
            "extraEnv[0].name=VAULTSYNC_AUDIT_FILE_DIRS",
            "extraEnv[0].value=/elsewhere",
            "extraVolumes[0].name=ca",
            "extraVolumes[0].configMap.name=vault-ca",
            "extraVolumeMounts[0].name=ca",
            "extraVolumeMounts[0].mountPath=/etc/vault-ca",
            "extraVolumeMounts[0].readOnly=true",
        )
    )
    assert container["args"][-1] == "--priority=5"
    dirs = [item for item in container["env"] if item["name"] == "VAULTSYNC_AUDIT_FILE_DIRS"]
    assert [item["value"] for item in dirs] == ["/vault/audit/", "/elsewhere"]  # later wins
    assert container["volumeMounts"][-1] == {
        "name": "ca",
        "mountPath": "/etc/vault-ca",
        "readOnly": True,
    }
    objects = render(helm, "ops", "extraVolumes[0].name=ca", "extraVolumes[0].configMap.name=c")
    volumes = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert [v["name"] for v in volumes] == ["tmp", "ca"]


def test_disruption_budget_and_spread_for_replicas(helm: Path) -> None:
    assert "PodDisruptionBudget" not in by_kind(render(helm, "ops"))
    objects = by_kind(
        render(
            helm,
            "ops",
            "replicas=3",
            "topologySpreadConstraints[0].maxSkew=1",
            "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "topologySpreadConstraints[1].maxSkew=1",
            "topologySpreadConstraints[1].topologyKey=topology.kubernetes.io/zone",
            "topologySpreadConstraints[1].whenUnsatisfiable=DoNotSchedule",
            "topologySpreadConstraints[1].labelSelector.matchLabels.team=x",
        )
    )
    deployment, budget = objects["Deployment"], objects["PodDisruptionBudget"]
    selector = deployment["spec"]["selector"]
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": selector,
    }
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0] == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": selector,
    }
    assert spread[1]["labelSelector"] == {"matchLabels": {"team": "x"}}  # given: kept
    off = by_kind(render(helm, "ops", "replicas=3", "podDisruptionBudget.enabled=false"))
    assert "PodDisruptionBudget" not in off


LEASES: dict[str, Any] = {
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "verbs": ["get", "list", "create", "update", "delete"],
}


def test_sharded_replicas_share_the_work_through_leases(helm: Path) -> None:
    objects = by_kind(render(helm, "ops", "sharding.replicas=3", "replicas=2"))
    assert _granted(objects["ClusterRole"]) == _expected(NEEDED)
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3  # sharding.replicas; `replicas` is ignored
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    container = container_of(list(objects.values()))
    assert container["args"][:2] == ["--shards=16", "--lease-group=vaultsync"]
    assert not [arg for arg in container["args"] if arg.startswith(("--standalone", "--peer"))]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["VAULTSYNC_LEASE_DURATION"]["value"] == "15"
    # Leases in the operator's namespace, for the chart's ServiceAccount and no one else
    role, binding = objects["Role"], objects["RoleBinding"]
    assert role["metadata"]["name"] == binding["metadata"]["name"] == "vaultsync-leases"
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "ops"
    assert role["rules"] == [LEASES]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "vaultsync-leases",
    }
    account = objects["ServiceAccount"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ops"}]
    budget = objects["PodDisruptionBudget"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == 1


def test_sharding_values(helm: Path) -> None:
    objects = by_kind(
        render(
            helm,
            "ops",
            "sharding.replicas=1",
            "sharding.shards=64",
            "sharding.leaseDuration=7.5",
            "config.namespace=vault-admin",
            "fullnameOverride=sync",
        )
    )
    assert objects["Deployment"]["spec"]["replicas"] == 1
    assert objects["Deployment"]["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert "PodDisruptionBudget" not in objects  # a single replica: no budget
    container = container_of(list(objects.values()))
    assert container["args"][:2] == ["--shards=64", "--lease-group=sync"]
    assert env_of(container)["VAULTSYNC_LEASE_DURATION"] == "7.5"
    # the Leases live where the operator does: config.namespace
    role, binding = objects["Role"], objects["RoleBinding"]
    assert role["metadata"]["name"] == "sync-leases"
    assert role["metadata"]["namespace"] == "vault-admin"
    assert binding["metadata"]["namespace"] == "vault-admin"
    assert binding["subjects"][0]["namespace"] == "ops"  # the ServiceAccount stays
    # no RBAC without rbac.create; no PDB when it is off
    kinds = by_kind(render(helm, "ops", "sharding.replicas=3", "rbac.create=false"))
    assert not {"Role", "RoleBinding", "ClusterRole"} & set(kinds)
    off = by_kind(render(helm, "ops", "sharding.replicas=3", "podDisruptionBudget.enabled=false"))
    assert "PodDisruptionBudget" not in off


def test_no_sharding_by_default(helm: Path) -> None:
    objects = render(helm, "ops")
    assert not [o for o in objects if o["kind"] in {"Role", "RoleBinding"}]
    assert "--standalone" in container_of(objects)["args"]
    assert not {"POD_NAME", "VAULTSYNC_LEASE_DURATION"} & set(env_of(container_of(objects)))
    for sets in (("replicas=2",), ("sharding.replicas=0", "replicas=3")):
        objects = render(helm, "ops", *sets)
        container = container_of(objects)
        assert not [arg for arg in container["args"] if arg.startswith(("--shards", "--lease"))]
        assert "VAULTSYNC_LEASE_DURATION" not in env_of(container)


def test_network_policy(helm: Path) -> None:
    assert "NetworkPolicy" not in by_kind(render(helm, "ops"))
    objects = by_kind(render(helm, "ops", "networkPolicy.enabled=true"))
    policy = objects["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == objects["Deployment"]["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    # ingress: the metrics port, the probe ports; every named port is one of the container's
    ports = {p["name"] for p in container_of(list(objects.values()))["ports"]}
    ingress = [[p["port"] for p in rule["ports"]] for rule in policy["ingress"]]
    assert ingress[0] == ["http-metrics"]
    assert set(ingress[1]) == ports - {"http-metrics"}
    assert all("from" not in rule for rule in policy["ingress"])  # [] peers: any source
    # egress: DNS, API server, Vault, by port; any address unless peers are given
    egress = [
        sorted((p["protocol"], p["port"]) for p in rule["ports"]) for rule in policy["egress"]
    ]
    assert egress == [
        [("TCP", 53), ("UDP", 53)],
        [("TCP", 443), ("TCP", 6443)],
        [("TCP", 8200)],
    ]
    assert all("to" not in rule for rule in policy["egress"])
    narrowed = by_kind(
        render(
            helm,
            "ops",
            "networkPolicy.enabled=true",
            "networkPolicy.apiServer.to[0].ipBlock.cidr=10.0.0.1/32",
            "networkPolicy.apiServer.ports={6443}",
            "networkPolicy.vault.to[0].namespaceSelector.matchLabels.name=vault",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
            "networkPolicy.extraEgress[0].ports[0].port=3128",
        )
    )["NetworkPolicy"]["spec"]
    assert narrowed["egress"][1] == {
        "ports": [{"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
    }
    assert narrowed["egress"][2]["to"] == [
        {"namespaceSelector": {"matchLabels": {"name": "vault"}}}
    ]
    assert narrowed["egress"][3] == {"ports": [{"port": 3128}]}
    assert narrowed["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    ]


def _namespaced_plurals() -> list[str]:
    crds = [yaml.safe_load(path.read_text()) for path in (ROOT / "crds").glob("*.yaml")]
    return sorted(
        c["spec"]["names"]["plural"]
        for c in crds
        if c["spec"]["group"] == GROUP and c["spec"]["scope"] == "Namespaced"
    )


def test_aggregated_user_roles(helm: Path) -> None:
    roles = {o["metadata"]["name"]: o for o in render(helm, "ops") if aggregated(o)}
    assert sorted(roles) == ["vaultsync-edit", "vaultsync-view"]
    view, edit = roles["vaultsync-view"], roles["vaultsync-edit"]
    labels = {k for k, v in view["metadata"]["labels"].items() if v == "true"}
    assert {AGGREGATE + r for r in ("view", "edit", "admin")} <= labels
    labels = {k for k, v in edit["metadata"]["labels"].items() if v == "true"}
    assert {AGGREGATE + r for r in ("edit", "admin")} <= labels
    assert AGGREGATE + "view" not in labels
    # the namespaced kinds, and only them (a new namespaced kind needs a decision here)
    assert _granted(view) == {
        (GROUP, plural, verb)
        for plural in _namespaced_plurals()
        for verb in ("get", "list", "watch")
    }
    assert _granted(edit) == {
        (GROUP, plural, verb)
        for plural in _namespaced_plurals()
        for verb in ("create", "update", "patch", "delete", "deletecollection")
    }
    assert _namespaced_plurals() == [
        "vaultauths",
        "vaultdynamicsecrets",
        "vaultpkisecrets",
        "vaultsecrets",
    ]
    for sets in (("rbac.aggregateToDefaultRoles=false",), ("rbac.create=false",)):
        assert not [o for o in render(helm, "ops", *sets) if aggregated(o)]


# --------------------------------------------------------------------------- real cluster


def dry_run(stack: Stack, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every object through the real API server's admission and validation, persisting nothing."""
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    result = stack.cp.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-o", "json", "-f", "-", input=manifest
    )
    out = json.loads(result.stdout)
    items: list[dict[str, Any]] = out["items"] if out["kind"] == "List" else [out]
    return items


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param((), id="defaults"),
        pytest.param(
            (
                f"defaultConnection.address={ADDRESS}",
                "defaultConnection.namespace=team-a",
                "defaultConnection.caCertSecretRef.name=vault-ca",
                "config.verbose=true",
                "config.minBackoff=0.5",
                "extraEnv[0].name=LOG_FORMAT",
                "extraEnv[0].value=json",
                "nodeSelector.kubernetes\\.io/os=linux",
                "tolerations[0].operator=Exists",
                "podAnnotations.example\\.com/x=y",
            ),
            id="defaultConnection",
        ),
        pytest.param(
            (
                f"defaultConnection.address={ADDRESS}",
                "replicas=2",
                "config.logFormat=json",
                "config.namespace=vault-admin",
                "config.resyncInterval=30",
                "networkPolicy.enabled=true",
                "networkPolicy.apiServer.to[0].ipBlock.cidr=10.0.0.1/32",
                "networkPolicy.vault.to[0].namespaceSelector.matchLabels.name=vault",
                "networkPolicy.extraEgress[0].ports[0].port=3128",
                "topologySpreadConstraints[0].maxSkew=1",
                "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
                "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
                "extraArgs={--priority=5}",
                "extraVolumes[0].name=ca",
                "extraVolumes[0].configMap.name=vault-ca",
                "extraVolumeMounts[0].name=ca",
                "extraVolumeMounts[0].mountPath=/etc/vault-ca",
            ),
            id="everything",
        ),
        pytest.param(
            (
                f"defaultConnection.address={ADDRESS}",
                "sharding.replicas=3",
                "config.logFormat=json",
            ),
            id="sharded",
        ),
    ],
)
def test_rendered_objects_pass_server_side_dry_run(
    stack: Stack, helm: Path, namespace: str, sets: tuple[str, ...]
) -> None:
    release = f"vs-{uuid.uuid4().hex[:6]}"  # cluster-scoped names must not collide
    objects = render(helm, namespace, *sets, release=release, crds=True)
    for operator_namespace in {o["metadata"].get("namespace") for o in objects} - {None}:
        stack.cp.kubectl("create", "namespace", operator_namespace, check=False)  # must exist
    accepted = dry_run(stack, objects)
    assert [(o["kind"], o["metadata"]["name"]) for o in accepted] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    kinds = {obj["kind"] for obj in accepted}
    assert "CustomResourceDefinition" in kinds
    assert ("VaultConnection" in kinds) == bool(sets)
    # Nothing was persisted.
    leftover = stack.cp.kubectl("get", "deployments,serviceaccounts", "-n", namespace, "-o", "name")
    assert f"deployment.apps/{release}-vaultsync" not in leftover.stdout


@pytest.fixture
def installed_rbac(stack: Stack, helm: Path, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart's ServiceAccount, ClusterRole and ClusterRoleBinding applied for real."""
    release = f"vs-{uuid.uuid4().hex[:6]}"
    objects = render(helm, namespace, release=release)
    rbac = [
        obj
        for obj in objects
        if obj["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
        and not aggregated(obj)
    ]
    assert len(rbac) == 3
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    stack.cp.kubectl("apply", "-f", "-", input=manifest)
    (account,) = (obj["metadata"]["name"] for obj in rbac if obj["kind"] == "ServiceAccount")
    yield namespace, account
    stack.cp.kubectl("delete", "-f", "-", "--wait=false", input=manifest, check=False)


def can_i(stack: Stack, user: str, verb: str, resource: str, sub: str, namespace: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={user}", "-n", namespace]
    if sub:
        args.append(f"--subresource={sub}")
    result = stack.cp.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}"
    return answer == "yes"


def review(stack: Stack, user: str, verb: str, resource: str, namespace: str) -> bool:
    """A SubjectAccessReview: unlike `kubectl auth can-i`, it answers for resources whose CRD
    is not installed (Argo Rollouts) instead of failing to resolve them."""
    name, _, group = resource.partition(".")
    api = client.AuthorizationV1Api(stack.core.api_client)
    answer = api.create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=["system:serviceaccounts", "system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, group=group, resource=name, namespace=namespace
                ),
            )
        )
    )
    return bool(answer.status.allowed)


def test_rbac_grants_what_the_operator_needs_and_no_more(
    stack: Stack, installed_rbac: tuple[str, str]
) -> None:
    namespace, account = installed_rbac
    user = f"system:serviceaccount:{namespace}:{account}"
    other = f"tenant-{uuid.uuid4().hex[:6]}"  # another namespace: the grants are cluster-wide
    checks = [(check, True) for check in NEEDED] + [(check, False) for check in FORBIDDEN]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda check: can_i(stack, user, *check[0], namespace=other), checks)
        )
    wrong = [
        f"{verb} {resource}{'/' + sub if sub else ''}: {'yes' if got else 'no'}"
        for ((verb, resource, sub), want), got in zip(checks, answers, strict=True)
        if got != want
    ]
    assert not wrong, f"{user} in {other}:\n" + "\n".join(wrong)
    # Argo Rollouts only with rbac.argoRollouts=true
    assert not any(review(stack, user, verb, res, other) for verb, res, _ in ROLLOUTS)


def test_rbac_with_argo_rollouts_grants_them(stack: Stack, helm: Path, namespace: str) -> None:
    release = f"vs-{uuid.uuid4().hex[:6]}"
    objects = render(helm, namespace, "rbac.argoRollouts=true", release=release)
    rbac = [
        o for o in objects if o["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    ]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    stack.cp.kubectl("apply", "-f", "-", input=manifest)
    try:
        (account,) = (o["metadata"]["name"] for o in rbac if o["kind"] == "ServiceAccount")
        user = f"system:serviceaccount:{namespace}:{account}"
        checks = [
            *ROLLOUTS,
            ("watch", "rollouts.argoproj.io", ""),
            ("delete", "rollouts.argoproj.io", ""),
        ]
        answers = [review(stack, user, verb, res, "default") for verb, res, _ in checks]
        assert answers == [True, True, True, False, False]
    finally:
        stack.cp.kubectl("delete", "-f", "-", "--wait=false", input=manifest, check=False)


def test_rbac_allows_real_token_requests_and_secret_writes_elsewhere(
    stack: Stack, installed_rbac: tuple[str, str]
) -> None:
    namespace, account = installed_rbac
    user = f"--as=system:serviceaccount:{namespace}:{account}"
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    stack.cp.kubectl("create", "namespace", tenant)
    try:
        stack.cp.kubectl("create", "serviceaccount", "app", "-n", tenant)
        token = stack.cp.kubectl("create", "token", "app", "-n", tenant, "--duration=10m", user)
        assert token.stdout.count(".") == 2  # a JWT, from the TokenRequest API
        stack.cp.kubectl(
            "create", "secret", "generic", "synced", "-n", tenant, "--from-literal=k=v", user
        )
        stack.cp.kubectl("delete", "secret", "synced", "-n", tenant, user)
        denied = stack.cp.kubectl("delete", "namespace", tenant, user, check=False)
        assert denied.returncode != 0
        assert "forbidden" in denied.stderr.lower()
    finally:
        stack.cp.kubectl("delete", "namespace", tenant, "--wait=false", check=False)


def test_aggregated_roles_let_namespace_users_manage_vaultsync_objects(
    stack: Stack, helm: Path, namespace: str
) -> None:
    """Through the built-in roles, as RoleBindings in a namespace grant them (the
    clusterrole-aggregation controller copies our rules into view, edit and admin)."""
    release = f"vs-{uuid.uuid4().hex[:6]}"
    roles = [o for o in render(helm, namespace, release=release) if aggregated(o)]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": roles})
    stack.cp.kubectl("apply", "-f", "-", input=manifest)
    users = {"view": "alice", "edit": "bob", "admin": "carol"}
    for role, user in users.items():
        binding = ("rolebinding", user, f"--clusterrole={role}", f"--user={user}")
        stack.cp.kubectl("create", *binding, "-n", namespace)
    vs, va, vp = f"vaultsecrets.{GROUP}", f"vaultauths.{GROUP}", f"vaultpkisecrets.{GROUP}"
    vd = f"vaultdynamicsecrets.{GROUP}"
    wanted = {
        ("alice", "get", vs, ""): True,
        ("alice", "list", va, ""): True,
        ("alice", "watch", vs, ""): True,
        ("alice", "list", vp, ""): True,
        ("alice", "create", vp, ""): False,
        ("alice", "list", vd, ""): True,
        ("alice", "create", vd, ""): False,
        ("alice", "create", vs, ""): False,
        ("alice", "delete", va, ""): False,
        ("alice", "get", "secrets", ""): False,
        ("bob", "create", vs, ""): True,
        ("bob", "update", va, ""): True,
        ("bob", "delete", vs, ""): True,
        ("bob", "deletecollection", va, ""): True,
        ("bob", "create", vp, ""): True,
        ("bob", "delete", vd, ""): True,
        ("bob", "patch", vd, "status"): False,
        ("bob", "patch", vp, "status"): False,
        ("bob", "patch", vs, "status"): False,
        ("bob", "update", va, "status"): False,
        ("carol", "create", va, ""): True,
        ("carol", "patch", vs, ""): True,
        ("carol", "patch", vs, "status"): False,
        ("dave", "get", vs, ""): False,  # no RoleBinding
    }
    cluster_scoped = [f"{p}.{GROUP}" for p in ("vaultpolicies", "vaultconnections")]
    wanted |= {(u, "create", r, ""): False for u in users.values() for r in cluster_scoped}

    def answers() -> dict[tuple[str, str, str, str], bool]:
        with ThreadPoolExecutor(8) as pool:
            got = pool.map(lambda c: can_i(stack, c[0], *c[1:], namespace=namespace), wanted)
            return dict(zip(wanted, got, strict=True))

    try:
        eventually(lambda: answers() == wanted, 60, "the aggregated rules in view/edit/admin")
        other = f"tenant-{uuid.uuid4().hex[:6]}"  # a RoleBinding grants its namespace only
        assert not can_i(stack, "bob", "create", vs, "", namespace=other)
    finally:
        stack.cp.kubectl("delete", "-f", "-", "--wait=false", input=manifest, check=False)


def _crd_copy(group: str, description: str) -> dict[str, Any]:
    """Our VaultSecret CRD under another group and names (so the real one is never touched,
    and `kubectl ... vaultsecret` in tests running beside it never resolves to the copy, even
    from a stale discovery cache), with description on spec.path."""
    crd = yaml.safe_load((CHART / "crds" / f"vaultsecrets.{GROUP}.yaml").read_text())
    crd["metadata"] = {"name": f"upgradeprobes.{group}"}
    crd["spec"]["group"] = group
    crd["spec"]["names"] = {
        "kind": "UpgradeProbe",
        "listKind": "UpgradeProbeList",
        "plural": "upgradeprobes",
        "singular": "upgradeprobe",
    }
    (version,) = crd["spec"]["versions"]
    path = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["path"]
    path["description"] = description
    return crd


def _served_description(stack: Stack, group: str) -> str:
    out = stack.cp.kubectl("get", "crd", f"upgradeprobes.{group}", "-o", "json").stdout
    (version,) = json.loads(out)["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    description: str = spec["properties"]["path"]["description"]
    return description


def test_crd_upgrade_path(stack: Stack, helm: Path, namespace: str, tmp_path: Path) -> None:
    """The README's upgrade: Helm leaves crds/ alone on upgrade; `kubectl apply --server-side
    --force-conflicts` updates them (and without --force-conflicts it is refused)."""
    group = f"u{uuid.uuid4().hex[:6]}.vaultsync.test"
    chart = tmp_path / "chart"
    (chart / "crds").mkdir(parents=True)
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: crdtest\nversion: 0.1.0\n")
    crd_file = chart / "crds" / "crd.yaml"
    crd_file.write_text(yaml.safe_dump(_crd_copy(group, "old")))
    kube = ("--kubeconfig", str(stack.cp.kubeconfig), "-n", namespace)
    release = f"crd-{uuid.uuid4().hex[:6]}"
    try:
        run_helm(helm, "install", release, str(chart), *kube)
        assert _served_description(stack, group) == "old"
        crd_file.write_text(yaml.safe_dump(_crd_copy(group, "new")))
        run_helm(helm, "upgrade", release, str(chart), *kube)
        assert _served_description(stack, group) == "old"  # Helm never upgrades crds/
        refused = stack.cp.kubectl("apply", "--server-side", "-f", str(crd_file), check=False)
        assert refused.returncode != 0 and "conflict" in refused.stderr.lower(), refused.stderr
        stack.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_file))
        assert _served_description(stack, group) == "new"
    finally:
        run_helm(helm, "uninstall", release, *kube, check=False)
        stack.cp.kubectl("delete", "crd", f"upgradeprobes.{group}", "--wait=false", check=False)


def test_notes_name_qualified_resources_and_the_crd_upgrade(
    stack: Stack, helm: Path, namespace: str, tmp_path: Path
) -> None:
    # The local kube-apiserver, built from source, says it is v0.0.0: a copy of the chart
    # without the kubeVersion constraint renders its NOTES.
    chart = tmp_path / "vaultsync"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    del meta["kubeVersion"]
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    out = run_helm(
        helm,
        "install",
        "notes",
        str(chart),
        "--dry-run=client",
        "--kubeconfig",
        str(stack.cp.kubeconfig),
        "-n",
        namespace,
    ).stdout
    notes = out.split("NOTES:", 1)[1]
    for qualified in (f"vaultsecrets.{GROUP}", f"vaultauths.{GROUP}", f"vaultconnections.{GROUP}"):
        assert qualified in notes
    assert "kubectl get vaultsecrets " not in notes  # every kubectl line qualifies
    assert "kubectl apply --server-side --force-conflicts -f <chart>/crds/" in notes
    assert "notes-vaultsync-view" in notes
