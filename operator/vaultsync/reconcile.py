"""Running any kind's reconciler: timing, metrics, status and Events, written once for all."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vaultsync.kube import events
from vaultsync.kube.api import Kube
from vaultsync.kube.logref import about
from vaultsync.kube.report import record
from vaultsync.runtime import metrics
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome
from vaultsync.runtime.reconciler import CleaningReconciler, Reconciler
from vaultsync.runtime.view import View

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciled:
    outcome: Outcome
    status: dict[str, Any]
    """The object's status as recorded: what the next reconcile should start from, as the
    watch may deliver the object's new version only later."""


def reconcile(
    kube: Kube, reconciler: Reconciler, body: Mapping[str, Any], view: View
) -> Reconciled:
    """Sync, count and time it, then record the outcome in status (when it changed) and Events."""
    started = time.monotonic()
    result = reconciler.sync(body, view)
    metrics.SYNCS.labels(reconciler.kind, result.outcome.reason).inc()
    metrics.SYNC_SECONDS.labels(reconciler.kind).observe(time.monotonic() - started)
    status = record(kube, reconciler.plural, body, result.outcome, result.fields)
    return Reconciled(result.outcome, status)


def clean_up(
    kube: Kube, reconciler: CleaningReconciler, body: Mapping[str, Any], view: View
) -> str:
    """The deletion's cleanup; a failure (to be retried) is said in a Warning Event and the log,
    so that a deletion that waits is never silent."""
    try:
        return reconciler.cleanup(body, view)
    except SyncError as exc:
        meta = body["metadata"]
        message = f"deletion waits for cleanup, retrying: {exc}"
        log.warning("%s %s: %s", reconciler.kind, meta["name"], message, extra=about(body))
        events.emit(kube, body, warning=True, reason=exc.reason, message=message)
        raise
