"""The objects tests and benchmarks apply: namespaces, vaultsync's kinds and Deployments."""

from __future__ import annotations

from typing import Any

from vaultsync import GROUP, VERSION

API_VERSION = f"{GROUP}/{VERSION}"


def namespace_object(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def connection(address: str) -> dict[str, Any]:
    """The VaultConnection `default`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "VaultConnection",
        "metadata": {"name": "default"},
        "spec": {"address": address},
    }


def vault_auth(namespace: str, role: str | None = None, sa: str = "default") -> dict[str, Any]:
    """The VaultAuth `default` of a namespace: Kubernetes auth as its own ServiceAccount."""
    return {
        "apiVersion": API_VERSION,
        "kind": "VaultAuth",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"kubernetes": {"role": role or namespace, "serviceAccount": sa}},
    }


def vault_secret(namespace: str, name: str, path: str, **spec: Any) -> dict[str, Any]:
    """A VaultSecret into the Secret of the same name, refreshed every 2 s unless spec says."""
    destination = spec.pop("destination", {"name": name})
    return {
        "apiVersion": API_VERSION,
        "kind": "VaultSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"path": path, "refreshInterval": "2s", "destination": destination, **spec},
    }


def deployment(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment of no replicas (nothing runs: there is no kubelet here); each rollout of it
    still shows as a new ReplicaSet, labelled with labels (set on its pod template)."""
    template = {"app": name, **(labels or {})}
    container = {"name": "app", "image": "registry.invalid/app:1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": template}, "spec": {"containers": [container]}},
        },
    }
