"""The whole local stack: control plane + OpenBao + CRDs + the operator as a process.

Shared by `make dev` (e2e.harness.dev), `make bench` (e2e.harness.bench) and the e2e fixtures
(e2e/conftest.py), which hand tests a :class:`Stack`.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import yaml
from kubernetes import client

from e2e.harness import ROOT, HarnessError
from e2e.harness.chart import OPERATOR_NAMESPACE as OPERATOR_NAMESPACE  # re-exported
from e2e.harness.chart import ChartRelease
from e2e.harness.conditions import ready_condition, ready_is
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubeauth import configure_kubernetes_auth
from e2e.harness.manifests import connection, namespace_object, vault_auth
from e2e.harness.metrics import parse, total
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from e2e.harness.processes import HOST, OneProcessServer, Process, free_port
from vaultsync import GROUP, VERSION


def install_crds(cp: ControlPlane) -> None:
    cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")


def start_stack(cp: ControlPlane, bao: OpenBao) -> None:
    """Everything the operator needs before it starts: the control plane and OpenBao running,
    OpenBao's Kubernetes auth wired to the cluster, the CRDs and the operator's namespace."""
    cp.start()
    bao.start()
    configure_kubernetes_auth(bao, cp)
    install_crds(cp)
    cp.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)


def examples(vault_address: str) -> list[dict[str, Any]]:
    """The objects under examples/, with the VaultConnection pointed at vault_address."""
    objects = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "VaultConnection":
                doc["spec"]["address"] = vault_address
            if doc:
                objects.append(doc)
    return objects


def apply(cp: ControlPlane, objects: list[dict[str, Any]]) -> None:
    manifest = {"apiVersion": "v1", "kind": "List", "items": objects}
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def tenant_policy(namespace: str) -> str:
    return f'path "secret/data/{namespace}/*" {{ capabilities = ["read"] }}\n'


def rotating_tenant_policy(namespace: str, password_policy: str = "") -> str:
    """What a tenant needs to rotate its own paths (and nothing of anyone else's)."""
    text = tenant_policy(namespace) + (
        f'path "secret/data/{namespace}/*" {{ capabilities = ["create", "update", "read"] }}\n'
        f'path "secret/metadata/{namespace}/*" {{ capabilities = ["read", "update"] }}\n'
    )
    if password_policy:
        text += (
            f'path "sys/policies/password/{password_policy}/generate" '
            '{ capabilities = ["read"] }\n'
        )
    return text


def grant_tenant(
    vault: hvac.Client, namespace: str, service_account: str = "default", *, rotating: bool = False
) -> None:
    """Vault side of a tenant: a policy for secret/<ns>/* (reading it; with rotating, also
    rotating it: rotating_tenant_policy) and a Kubernetes-auth role."""
    policy = rotating_tenant_policy(namespace) if rotating else tenant_policy(namespace)
    vault.sys.create_or_update_policy(f"{namespace}-read", policy)
    vault.auth.kubernetes.create_role(
        namespace,
        bound_service_account_names=[service_account],
        bound_service_account_namespaces=[namespace],
        policies=[f"{namespace}-read"],
        ttl="1h",
        mount_point="kubernetes",
    )


def add_tenant(cp: ControlPlane, bao: OpenBao, name: str) -> None:
    """A namespace with a VaultAuth `default` (the default VaultConnection, at bao) and a Vault
    role and policy of its own."""
    apply(cp, [namespace_object(name), connection(bao.address), vault_auth(name)])
    grant_tenant(bao.client(), name)


class Operator(OneProcessServer):
    """`vaultsync run` as a real process against the local cluster.

    Given a ChartRelease (e2e/harness/chart.py), it runs as the chart runs it: authenticated
    as the chart's ServiceAccount (a token kubeconfig, no client certificate), with the args
    and env of the chart's container rendered with the release's values plus this process's
    ports (config.metricsPort, livenessPort, readinessPort) and `verbose`. Given a kubeconfig
    path instead, it runs as that kubeconfig's user with the harness's own settings (what
    `make bench` measures with).
    """

    def __init__(
        self,
        workdir: Path,
        credentials: Path | ChartRelease,
        *,
        verbose: bool = False,
        peering: tuple[str, int] | None = None,
        priority: int | None = None,
        source: Path | None = None,
        args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        """verbose runs the operator at DEBUG, so that log scans see everything it says.
        With a kubeconfig, peering (name, priority) runs active/standby (`--peering`) instead of
        standalone; with a ChartRelease the chart decides (replicas > 1) and priority, if
        given, is added to its args. source: the `operator/` directory the `vaultsync` package
        is imported from (another checkout's, to compare commits); this one's by default.
        args: more arguments of `vaultsync run` (with a kubeconfig, `--shards=N` replaces
        `--standalone`). env: more variables (with a chart: as its extraEnv)."""
        if isinstance(credentials, ChartRelease) and peering is not None:
            raise HarnessError("with a ChartRelease the chart's replicas decide peering")
        self.workdir = workdir
        self.verbose = verbose
        self.peering = peering
        self.priority = priority
        self.credentials = credentials
        self.source = source or ROOT / "operator"
        self.ports = {name: free_port() for name in ("metrics", "liveness", "readiness")}
        self.env = env
        self.args = args
        self.process: Process | None = None
        state = workdir / "operator.json"
        if state.exists():
            saved = json.loads(state.read_text())
            # a state written before the probes had ports of their own knew only metrics
            self.ports = saved.get("ports") or {**self.ports, "metrics": saved["metrics_port"]}
            self.process = Process.load("operator", saved["process"], workdir)

    @property
    def metrics_port(self) -> int:
        return self.ports["metrics"]

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig the process runs with (a chart release's token: refreshed if due)."""
        if isinstance(self.credentials, ChartRelease):
            return self.credentials.kubeconfig()
        return self.credentials

    @property
    def log(self) -> Path:
        return self.workdir / "operator.log"

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The operator's arguments (after `vaultsync run`) and environment."""
        if isinstance(self.credentials, ChartRelease):
            release = self.credentials
            extra_env = [
                *(release.values.get("extraEnv") or []),
                *({"name": k, "value": v} for k, v in self.env.items()),
            ]
            values: dict[str, Any] = {
                "config": {
                    "metricsPort": self.ports["metrics"],
                    "livenessPort": self.ports["liveness"],
                    "readinessPort": self.ports["readiness"],
                    "verbose": self.verbose,
                },
                "extraEnv": extra_env,
            }
            container = release.container(values, pod=self.workdir.name)
            priority = [] if self.priority is None else [f"--priority={self.priority}"]
            return [*container.args, *priority, *self.args], container.env
        mode = (
            [f"--peering={self.peering[0]}", f"--priority={self.peering[1]}"]
            if self.peering
            else []
            if any(a.startswith("--shards") for a in self.args)
            else ["--standalone"]
        )
        if mode != ["--standalone"] and not any(a.startswith("--identity") for a in self.args):
            mode.append(f"--identity={self.workdir.name}")  # processes share the host's name
        args = [
            *mode,
            f"--liveness=http://{HOST}:{self.ports['liveness']}/healthz",
            f"--readiness=http://{HOST}:{self.ports['readiness']}/readyz",
            *(["--verbose"] if self.verbose else []),
            *self.args,
        ]
        env = {
            "VAULTSYNC_NAMESPACE": OPERATOR_NAMESPACE,
            "VAULTSYNC_METRICS_PORT": str(self.ports["metrics"]),
            "VAULTSYNC_MIN_BACKOFF": "1",
            "VAULTSYNC_MAX_BACKOFF": "5",
            "VAULTSYNC_RESYNC_INTERVAL": "2",
            **self.env,
        }
        return args, env

    def start(self, *, wait: bool = True) -> None:
        """Start the process (unless running) and, with wait, wait for its metrics endpoint
        (which it serves once started)."""
        if self.pid is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        args, env = self.command()
        env = {
            **env,
            "PYTHONUNBUFFERED": "1",
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": str(self.source),
        }
        self.process = Process.spawn(
            "operator", [sys.executable, "-m", "vaultsync", "run", *args], self.workdir, env
        )
        (self.workdir / "operator.json").write_text(
            json.dumps({"ports": self.ports, "process": self.process.dump()})
        )
        if wait:
            eventually(
                self.metrics,
                60,
                "the operator's metrics endpoint",
                retry_on=(OSError,),
                watch=self.process,
            )

    def probe(self, which: str) -> tuple[int | None, str]:
        """GET the liveness ("healthz") or readiness ("readyz") endpoint: (status, body);
        status None when nothing answers."""
        port = self.ports["liveness" if which == "healthz" else "readiness"]
        url = f"http://{HOST}:{port}/{which}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (OSError, http.client.HTTPException):
            return None, ""

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include labels."""
        return total(parse(self.metrics()), name, **labels)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def secret_data(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's data, decoded; None when there is no such Secret."""
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()}


@dataclass
class Stack:
    """A running stack as the e2e tests see it, with API clients and the values they wrote."""

    cp: ControlPlane
    bao: OpenBao
    operator: Operator
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    audit_log: Path
    values: set[str] = field(default_factory=set)

    def put(self, path: str, data: dict[str, Any]) -> int:
        """Write KV data, remembering its values for the leak scan at the end of the run."""
        self.values.update(str(v) for v in data.values() if len(str(v)) >= 6)
        response = self.vault.secrets.kv.v2.create_or_update_secret(
            path, data, mount_point="secret"
        )
        return int(response["data"]["version"])

    def leaks(self) -> list[str]:
        """Where a remembered secret value shows up: operator log, Events, statuses."""
        places = {"operator log": self.operator.log_text()}
        events = self.core.list_event_for_all_namespaces().items
        places["events"] = "\n".join(f"{e.reason} {e.message}" for e in events)
        statuses = []
        for plural in (
            "vaultsecrets",
            "vaultpkisecrets",
            "vaultdynamicsecrets",
            "vaulttransitkeys",
        ):
            objects: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
            statuses += [o.get("status") for o in objects["items"]]
        places["statuses"] = json.dumps(statuses)
        return [
            f"{where} contains a secret value"
            for where, text in places.items()
            for value in self.values
            if value in text
        ]

    @property
    def vault(self) -> hvac.Client:
        return self.bao.client()

    def apply(self, *objects: dict[str, Any]) -> None:
        apply(self.cp, list(objects))

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return secret_data(self.core, namespace, name)

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One of vaultsync's objects (cluster-scoped unless a namespace is given)."""
        obj: Any
        if namespace is None:
            obj = self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
        else:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        found: dict[str, Any] = obj
        return found

    def rollouts(self, namespace: str, deployment: str) -> int:
        """The ReplicaSets of a Deployment: its first, and one per rollout."""
        apps = client.AppsV1Api(self.core.api_client)
        uid = apps.read_namespaced_deployment(deployment, namespace).metadata.uid
        return sum(
            1
            for rs in apps.list_namespaced_replica_set(namespace).items
            if any(ref.uid == uid for ref in rs.metadata.owner_references or [])
        )

    def vaultsecret(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get("vaultsecrets", name, namespace)

    def ready(self, namespace: str, name: str) -> dict[str, Any] | None:
        return ready_condition(self.vaultsecret(namespace, name))

    def ready_is(self, namespace: str, name: str, status: str) -> dict[str, Any] | None:
        """The Ready condition if it has status and is about the current generation."""
        return ready_is(self.vaultsecret(namespace, name), status)

    def namespace_gone(self, namespace: str) -> bool:
        return not self.cp.kubectl("get", "namespace", namespace, check=False).stdout.strip()

    def identity_gone(self, namespace: str) -> bool:
        """No VaultAuth and no ServiceAccount left in namespace (a tenant's identity deleted,
        as the namespace controller does first in a namespace being deleted)."""
        listed = self.cp.kubectl(
            "get", "vaultauths,serviceaccounts", "-n", namespace, "-o", "name", check=False
        )
        return not listed.stdout.strip()
