"""The Helm chart, checked with a real helm and against the real kube-apiserver.

helm is built from the Go module proxy (e2e/harness/helm.py) unless cached: these tests never skip
for want of it. Rendered objects are validated with a server-side dry run, and the chart's
RBAC is applied for real and probed with `kubectl auth can-i` as its ServiceAccount.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.harness import ROOT
from e2e.harness.helm import build_helm, helm_path
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
    *(
        (verb, "secrets", "")
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
    ),
    ("create", "serviceaccounts", "token"),
    *((verb, "events", "") for verb in ("create", "patch")),
    *((verb, "events.events.k8s.io", "") for verb in ("create", "patch")),
    *((verb, "namespaces", "") for verb in ("get", "list", "watch")),
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
    ("create", "clusterkopfpeerings.kopf.dev", ""),
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


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
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
        ("image.pullPolicy=Sometimes", "pullPolicy"),
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
    assert container["args"] == ["--standalone", "--liveness=http://0.0.0.0:8081/healthz"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {name: item.get("value") for name, item in env.items() if name != "POD_NAMESPACE"} == {
        "VAULTSYNC_WORKERS": "16",
        "VAULTSYNC_MIN_BACKOFF": "5",
        "VAULTSYNC_MAX_BACKOFF": "300",
        "VAULTSYNC_METRICS_PORT": "8080",
        "VAULTSYNC_AUDIT_FILE_DIRS": "/vault/audit/",
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http-metrics": 8080, "http-health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-health"}
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


def test_replicas_join_a_kopf_peering(helm: Path) -> None:
    objects = by_kind(render(helm, "vaultsync-system", "replicas=2"))
    peering = objects["ClusterKopfPeering"]
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert f"--peering={peering['metadata']['name']}" in container["args"]
    assert "--standalone" not in container["args"]
    rules = objects["ClusterRole"]["rules"]
    assert {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["get", "list", "watch", "patch"],
    } in rules


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
    ],
)
def test_rendered_objects_pass_server_side_dry_run(
    stack: Stack, helm: Path, namespace: str, sets: tuple[str, ...]
) -> None:
    release = f"vs-{uuid.uuid4().hex[:6]}"  # cluster-scoped names must not collide
    objects = render(helm, namespace, *sets, release=release, crds=True)
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
