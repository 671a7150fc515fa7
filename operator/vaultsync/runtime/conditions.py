"""Kubernetes-shaped status conditions (metav1.Condition semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
"""kstatus's two abnormal-true conditions (sigs.k8s.io/cli-utils): Reconciling=True makes an
object InProgress, Stalled=True makes it Failed; without either, kstatus reads Ready."""

Conditions = list[dict[str, Any]]


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: Conditions,
    *,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str | None = None,
) -> Conditions:
    """Return conditions with one replaced; lastTransitionTime moves only on a status flip."""
    wanted = "True" if status else "False"
    previous = next((c for c in conditions if c.get("type") == type_), None)
    transition = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == wanted and previous.get("lastTransitionTime")
        else now or now_rfc3339()
    )
    updated = {
        "type": type_,
        "status": wanted,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [updated]


@dataclass(frozen=True)
class ConditionUpdate:
    """A condition besides Ready that a reconcile sets (status True/False) or removes (None)."""

    type: str
    status: bool | None
    reason: str = ""
    message: str = ""


def apply_updates(
    conditions: Conditions, updates: tuple[ConditionUpdate, ...], generation: int
) -> Conditions:
    for update in updates:
        if update.status is None:
            conditions = [c for c in conditions if c.get("type") != update.type]
        else:
            conditions = set_condition(
                conditions,
                type_=update.type,
                status=update.status,
                reason=update.reason,
                message=update.message,
                generation=generation,
            )
    return conditions


def get_condition(conditions: Conditions, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def progress(
    ready: bool, retryable: bool, reason: str, message: str
) -> tuple[ConditionUpdate, ...]:
    """Reconciling and Stalled for a reconcile's outcome, as kstatus reads them: a failure that
    retrying can heal is Reconciling (InProgress: keep waiting), one that needs a person to
    change something is Stalled (Failed: stop waiting); a success has neither."""
    if ready:
        return ConditionUpdate(RECONCILING, None), ConditionUpdate(STALLED, None)
    now, gone = (RECONCILING, STALLED) if retryable else (STALLED, RECONCILING)
    return ConditionUpdate(now, True, reason, message), ConditionUpdate(gone, None)
