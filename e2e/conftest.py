"""Session fixtures: a real control plane, a real OpenBao and the operator as a process.

Everything is started once per session in a temporary directory and torn down at the
end; tests isolate themselves with namespaces of their own.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import pytest
from kubernetes import client, config

from e2e.localcluster import ControlPlane, OpenBao, build, configure_kubernetes_auth
from e2e.stack import OPERATOR_NAMESPACE, Operator, apply, grant_tenant, install_crds

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
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
        objects = self.custom.list_cluster_custom_object("vaultsync.io", "v1alpha1", "vaultsecrets")
        places["statuses"] = json.dumps([o.get("status") for o in objects["items"]])
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
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {
            k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()
        }

    def vaultsecret(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "vaultsync.io", "v1alpha1", namespace, "vaultsecrets", name
        )
        return obj

    def ready(self, namespace: str, name: str) -> dict[str, Any] | None:
        conditions = self.vaultsecret(namespace, name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), None)

    def ready_is(self, namespace: str, name: str, status: str) -> dict[str, Any] | None:
        """The Ready condition if it has status and is about the current generation."""
        condition = self.ready(namespace, name)
        generation = self.vaultsecret(namespace, name)["metadata"]["generation"]
        if (
            condition
            and condition["status"] == status
            and condition["observedGeneration"] == generation
        ):
            return condition
        return None


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    build()
    root = tmp_path_factory.mktemp("stack")
    cp = ControlPlane(root / "cluster")
    bao = OpenBao(root / "openbao")
    operator = Operator(root / "operator", cp.kubeconfig, verbose=True)
    try:
        cp.start()
        bao.start()
        audit_log = root / "openbao" / "audit.log"
        bao.client().sys.enable_audit_device(
            "file", path="file", options={"file_path": str(audit_log)}
        )
        configure_kubernetes_auth(bao, cp)
        install_crds(cp)
        cp.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
        operator.start()
        api = config.new_client_from_config(str(cp.kubeconfig))
        stack = Stack(
            cp, bao, operator, client.CoreV1Api(api), client.CustomObjectsApi(api), audit_log
        )
        yield stack
        leaks = stack.leaks()
        assert not leaks, leaks
    finally:
        operator.stop()
        bao.stop()
        cp.stop()


@pytest.fixture
def tenant(stack: Stack) -> Iterator[str]:
    """A fresh namespace with a VaultAuth `default` and a Vault role/policy of its own."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    stack.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        connection(stack.bao.address),
        vault_auth(namespace),
    )
    grant_tenant(stack.vault, namespace)
    yield namespace
    stack.cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def connection(address: str) -> dict[str, Any]:
    return {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultConnection",
        "metadata": {"name": "default"},
        "spec": {"address": address},
    }


def vault_auth(namespace: str, role: str | None = None, sa: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultAuth",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"kubernetes": {"role": role or namespace, "serviceAccount": sa}},
    }


def vault_secret(namespace: str, name: str, path: str, **spec: Any) -> dict[str, Any]:
    destination = spec.pop("destination", {"name": name})
    return {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"path": path, "refreshInterval": "2s", "destination": destination, **spec},
    }


def audit_entries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
