"""Kubernetes Events about our objects (core/v1, what `kubectl describe` shows).

The operator posts them from a thread of their own (`Poster`), as client-go's event
broadcaster does: a reconcile never waits for its Event. When Vault is sealed, or comes back,
every object's Ready flips at once, and an Event per object posted beside its status write
was half of the writes to the API server on the way to all Ready again; from one thread
they trail the status writes instead. A burst larger than the queue drops Events (counted in
`vaultsync_events_dropped_total`), never a reconcile's result: status says the same.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync.kube.api import Kube, describe
from vaultsync.runtime import metrics

log = logging.getLogger(__name__)
COMPONENT = "vaultsync"
QUEUED = 5000
"""Events waiting to be posted at most: one per object of a large operator's burst."""


def _post(kube: Kube, event: dict[str, Any]) -> None:
    """Best effort: a failed Event is logged, never raised."""
    try:
        kube.core.create_namespaced_event(event["metadata"]["namespace"], event)
    except ApiException as exc:
        name, reason = event["involvedObject"]["name"], event["reason"]
        log.warning("could not post event %s on %s: %s", reason, name, describe(exc))


class Poster:
    """Posts queued Events, in order, from one daemon thread."""

    def __init__(self, kube: Kube, size: int = QUEUED) -> None:
        self.kube = kube
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(size)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            metrics.EVENTS_DROPPED.inc()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                _post(self.kube, event)
            except Exception:  # the thread outlives any one Event
                log.exception("could not post event %s", event["reason"])

    def close(self, timeout: float) -> None:
        """Post what is queued (for at most timeout seconds), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


def emit(kube: Kube, body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
    """Best effort: a failed Event is logged, never raised. Queued for kube.events when the
    operator runs one (it stamps the time of the emit), else posted at once."""
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
    if kube.events is not None:
        kube.events.put(event)
    else:
        _post(kube, event)
