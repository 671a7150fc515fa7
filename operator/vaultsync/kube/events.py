"""Kubernetes Events about our objects (core/v1, what `kubectl describe` shows)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe, drain

log = logging.getLogger(__name__)
COMPONENT = "vaultsync"


def emit(kube: Kube, body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
    """Best effort: a failed Event is logged, never raised."""
    meta = body["metadata"]
    namespace = meta.get("namespace") or "default"
    now = datetime.now(UTC)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=namespace),
        involved_object=client.V1ObjectReference(
            api_version=body["apiVersion"],
            kind=body["kind"],
            name=meta["name"],
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message[:1024],
        type="Warning" if warning else "Normal",
        source=client.V1EventSource(component=COMPONENT),
        reporting_component=COMPONENT,
        reporting_instance=COMPONENT,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    try:
        drain(kube.core.create_namespaced_event(namespace, event, _preload_content=False))
    except ApiException as exc:
        log.warning("could not post event %s on %s: %s", reason, meta["name"], describe(exc))
