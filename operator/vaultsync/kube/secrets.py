"""Reading and writing destination Secrets."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync import metrics
from vaultsync.destination import Action, Plan
from vaultsync.errors import SyncError
from vaultsync.kube.api import Kube, describe


def read(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        secret = kube.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise SyncError(
            f"read Secret {name!r}: {describe(exc)}", reason="KubernetesError"
        ) from None
    body: dict[str, Any] = kube.core.api_client.sanitize_for_serialization(secret)
    body.setdefault("apiVersion", "v1")
    body.setdefault("kind", "Secret")
    return body


def apply(kube: Kube, namespace: str, plan: Plan) -> None:
    """Carry out a plan; a concurrent change (409) is retried by the caller."""
    name = plan.body["metadata"]["name"]
    try:
        if plan.action is Action.CREATE:
            kube.core.create_namespaced_secret(namespace, plan.body)  # type: ignore[arg-type]
        elif plan.action is Action.REPLACE:
            kube.core.replace_namespaced_secret(name, namespace, plan.body)  # type: ignore[arg-type]
        else:
            return
    except ApiException as exc:
        raise SyncError(
            f"{plan.action.value} Secret {name!r}: {describe(exc)}",
            reason="Conflict" if exc.status == 409 else "KubernetesError",
        ) from None
    metrics.SECRET_WRITES.labels(plan.action.value).inc()


def delete(kube: Kube, namespace: str, name: str) -> None:
    try:
        kube.core.delete_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise SyncError(
                f"delete Secret {name!r}: {describe(exc)}", reason="KubernetesError"
            ) from None
