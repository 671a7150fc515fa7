"""Status subresource writes for our custom resources."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe


class StatusWriteFailed(Exception):
    pass


def patch(
    kube: Kube, plural: str, namespace: str | None, name: str, status: dict[str, Any]
) -> None:
    try:
        kube.core.patch_status(plural, namespace, name, status)
    except ApiException as exc:
        if exc.status == 404:
            return  # deleted meanwhile
        raise StatusWriteFailed(f"status of {plural}/{name}: {describe(exc)}") from None
