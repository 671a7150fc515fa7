"""Running any kind's reconciler once: timing, metrics, status and Events, written once."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vaultsync.kube.api import Kube
from vaultsync.kube.report import record
from vaultsync.runtime import metrics
from vaultsync.runtime.outcome import Outcome
from vaultsync.runtime.reconciler import Reconciler
from vaultsync.runtime.view import View


def reconcile(kube: Kube, reconciler: Reconciler, body: Mapping[str, Any], view: View) -> Outcome:
    """Sync, count and time it, then record the outcome in status (when it changed) and Events."""
    started = time.monotonic()
    result = reconciler.sync(body, view)
    metrics.SYNCS.labels(reconciler.kind, result.outcome.reason).inc()
    metrics.SYNC_SECONDS.labels(reconciler.kind).observe(time.monotonic() - started)
    record(kube, reconciler.plural, body, result.outcome, result.fields)
    return result.outcome
