"""Rolling restarts of the workloads that use a VaultSecret's Secret, when its data changes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from vaultsync.api.base import Duration, K8sName, Model

MAX_TARGETS = 32


class WorkloadKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"
    DAEMON_SET = "DaemonSet"
    ROLLOUT = "Rollout"


class RolloutRestartTarget(Model):
    """A workload in the object's own namespace, restarted when the Secret's data changes."""

    kind: WorkloadKind = Field(
        description="Deployment, StatefulSet, DaemonSet (apps/v1) or Rollout (Argo Rollouts, "
        "argoproj.io/v1alpha1; restarted through its spec.restartAt)."
    )
    name: K8sName = Field(description="The workload's name, in the object's own namespace.")


class RestartSpec(Model):
    """How restarts of the rolloutRestartTargets (and opted-in workloads) happen."""

    min_interval: Duration = Field(
        default="0",
        description="Least time between two restarts of one workload by vaultsync: a change "
        "inside the window is applied once at its end (several changes become one restart), "
        'never dropped. "0": restart at once.',
    )


def _unique(targets: list[RolloutRestartTarget]) -> list[RolloutRestartTarget]:
    seen = [(t.kind, t.name) for t in targets]
    if len(seen) != len(set(seen)):
        raise ValueError(MESSAGES["unique_targets"])
    return targets


MESSAGES = {"unique_targets": "two rolloutRestartTargets entries name the same workload"}

ROLLOUT_RESTART_TARGETS_DESCRIPTION = (
    "Workloads restarted (rolling) when the data of the destination Secret really changes: a "
    "pod-template annotation holding a keyed HMAC of the data, written by server-side apply "
    "under the field manager vaultsync, so refreshes, operator restarts and GitOps re-applies "
    "restart nothing. A workload can also opt in itself with the annotation "
    'vaultsync.io/restart-on-change: "<secret>[,<secret>...]".'
)
RESTART_DESCRIPTION = "How restarts of the rolloutRestartTargets (and opted-in workloads) happen."

RolloutRestartTargets = Annotated[
    list[RolloutRestartTarget],
    AfterValidator(_unique),
    Field(
        max_length=MAX_TARGETS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["kind", "name"],
        },
        description=ROLLOUT_RESTART_TARGETS_DESCRIPTION,
    ),
]
"""spec.rolloutRestartTargets: unique by (kind, name), which the API server enforces too."""
