"""Our finalizer on the objects whose deletion waits for a cleanup (`vaultsync.io/finalizer`).

Added before the first reconcile and removed once the cleanup is done, by the replica that
reconciles the object, with JSON patches that touch nothing but our own entry: an add at the
resourceVersion read (a concurrent change is a Conflict, retried later), a remove at the
index where a test finds our name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync import GROUP, VERSION
from vaultsync.kube.api import Kube, describe, drain
from vaultsync.runtime.errors import SyncError

FINALIZER = f"{GROUP}/finalizer"
JSON_PATCH = "application/json-patch+json"


def has(body: Mapping[str, Any]) -> bool:
    return FINALIZER in ((body.get("metadata") or {}).get("finalizers") or [])


def _patch(kube: Kube, plural: str, meta: Mapping[str, Any], ops: list[dict[str, Any]]) -> None:
    namespace, name = meta.get("namespace"), meta["name"]
    options: dict[str, Any] = {"_content_type": JSON_PATCH, "_preload_content": False}
    custom = kube.custom
    if namespace:
        drain(
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, ops, **options
            )
        )
    else:
        drain(custom.patch_cluster_custom_object(GROUP, VERSION, plural, name, ops, **options))


def add(kube: Kube, plural: str, body: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    existing = meta.get("finalizers")
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
    ]
    if existing:
        ops.append({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
    else:
        ops.append({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    try:
        _patch(kube, plural, meta, ops)
    except ApiException as exc:
        raise SyncError(
            f"adding the finalizer: {describe(exc)}", reason="KubernetesError"
        ) from None


def remove(kube: Kube, plural: str, body: Mapping[str, Any]) -> None:
    """Remove our finalizer (nothing when the object is gone or no longer has it)."""
    meta = body["metadata"]
    finalizers = meta.get("finalizers") or []
    if FINALIZER not in finalizers:
        return
    at = f"/metadata/finalizers/{finalizers.index(FINALIZER)}"
    ops = [{"op": "test", "path": at, "value": FINALIZER}, {"op": "remove", "path": at}]
    try:
        _patch(kube, plural, meta, ops)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise SyncError(
            f"removing the finalizer: {describe(exc)}", reason="KubernetesError"
        ) from None
