"""Recording a reconcile's outcome on our object: the Ready condition, status fields, an Event.

Besides Ready, a failure sets kstatus's Reconciling (retried soon: the failure may heal by
itself) or Stalled (a person must change something: see SyncError.retryable), and a success
removes both: kstatus then says InProgress, Failed or (from Ready) Current.

Status is written only when it changed; an Event is posted when Ready or its reason
changed, or when the reconcile wrote something (a drift repair, say) — except for an
object's first successful reconcile: its status says so, and a Normal Event per new object
doubled the API server's work when thousands arrive at once (issue 11's benchmark).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vaultsync.kube import events, status
from vaultsync.kube.api import Kube
from vaultsync.kube.logref import about
from vaultsync.runtime.conditions import (
    READY,
    apply_updates,
    get_condition,
    progress,
    set_condition,
)
from vaultsync.runtime.outcome import Outcome

log = logging.getLogger(__name__)


def record(
    kube: Kube, plural: str, body: Mapping[str, Any], outcome: Outcome, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """Record outcome on body's object; its status now."""
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    current = dict(body.get("status") or {})
    previous = get_condition(current.get("conditions") or [], READY)
    conditions = set_condition(
        current.get("conditions") or [],
        type_=READY,
        status=outcome.ready,
        reason=outcome.reason,
        message=outcome.message,
        generation=generation,
    )
    kstatus = progress(outcome.ready, outcome.retryable, outcome.reason, outcome.message)
    conditions = apply_updates(conditions, (*outcome.conditions, *kstatus), generation)
    new = {**current, **fields, "observedGeneration": generation, "conditions": conditions}
    if new != current:
        status.patch(kube, plural, meta.get("namespace"), meta["name"], new)
    flipped = previous is None or (previous.get("status"), previous.get("reason")) != (
        "True" if outcome.ready else "False",
        outcome.reason,
    )
    first_success = previous is None and outcome.ready
    said = (outcome.written or flipped) and not first_success
    level = logging.INFO if said else logging.DEBUG  # every outcome at DEBUG (--verbose)
    if log.isEnabledFor(level):
        where = "/".join(filter(None, (meta.get("namespace"), meta["name"])))
        parts = (body["kind"], where, outcome.reason, outcome.message)
        log.log(level, "%s %s: %s: %s", *parts, extra=about(body))
    if said:
        events.emit(
            kube, body, warning=not outcome.ready, reason=outcome.reason, message=outcome.message
        )
    return new
