"""Kubernetes Events about our objects (core/v1, what `kubectl describe` shows)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe

log = logging.getLogger(__name__)
COMPONENT = "vaultsync"


def emit(kube: Kube, body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
    """Best effort: a failed Event is logged, never raised."""
    meta = body["metadata"]
    namespace = meta.get("namespace") or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
        "involvedObject": {k: v for k, v in involved.items() if v is not None},
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.core.create_namespaced_event(namespace, event)
    except ApiException as exc:
        log.warning("could not post event %s on %s: %s", reason, meta["name"], describe(exc))
