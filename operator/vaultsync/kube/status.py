"""Status subresource writes for our custom resources."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync import GROUP, VERSION
from vaultsync.kube.api import Kube, describe, drain


class StatusWriteFailed(Exception):
    pass


def patch(
    kube: Kube, plural: str, namespace: str | None, name: str, status: dict[str, Any]
) -> None:
    body = {"status": status}
    try:
        if namespace:
            response = kube.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, body, _preload_content=False
            )
        else:
            response = kube.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, name, body, _preload_content=False
            )
        drain(response)
    except ApiException as exc:
        if exc.status == 404:
            return  # deleted meanwhile
        raise StatusWriteFailed(f"status of {plural}/{name}: {describe(exc)}") from None
