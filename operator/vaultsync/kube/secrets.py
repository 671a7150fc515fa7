"""Reading and writing Secrets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe
from vaultsync.runtime import metrics
from vaultsync.runtime.errors import SyncError

REASONS = {
    ("create", 409): "AlreadyExists",
    ("replace", 409): "Conflict",
    ("create", 422): "SecretInvalid",
    ("replace", 422): "SecretInvalid",
}
"""409: exists already, or changed meanwhile (read again and retry); 422: the API server
refuses the content (the same content again would be refused again: not retryable)."""
STALE = frozenset({"AlreadyExists", "Conflict"})
"""Reasons that say the Secret a write was planned from is not the current one."""


def read(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The Secret as JSON."""
    try:
        body = kube.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise SyncError(
            f"read Secret {name!r}: {describe(exc)}", reason="KubernetesError"
        ) from None
    body.setdefault("apiVersion", "v1")
    body.setdefault("kind", "Secret")
    return body


def create(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    manager = kube.field_manager
    _write("create", body, lambda: kube.core.create_namespaced_secret(namespace, body, manager))


def replace(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    """Replace at body's resourceVersion: a concurrent change is a Conflict, retried later."""
    name, manager = body["metadata"]["name"], kube.field_manager
    _write(
        "replace", body, lambda: kube.core.replace_namespaced_secret(name, namespace, body, manager)
    )


def _write(operation: str, body: dict[str, Any], call: Callable[[], object]) -> None:
    try:
        call()
    except ApiException as exc:
        raise SyncError(
            f"{operation} Secret {body['metadata']['name']!r}: {describe(exc)}",
            reason=REASONS.get((operation, exc.status or 0), "KubernetesError"),
            retryable=exc.status != 422,
        ) from None
    metrics.SECRET_WRITES.labels(operation).inc()


def delete(kube: Kube, namespace: str, name: str) -> None:
    try:
        kube.core.delete_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise SyncError(
                f"delete Secret {name!r}: {describe(exc)}", reason="KubernetesError"
            ) from None
