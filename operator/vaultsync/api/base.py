"""Shared pieces of the CRD models: camelCase aliases, conditions, durations."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from vaultsync.runtime.errors import SyncError

DURATION_PATTERN = r"^(0|([0-9]+(ms|s|m|h))+)$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description='A duration such as "30s", "5m" or "1h30m"; "0" means never.',
    ),
]
K8sName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    ),
]


class DeletionPolicy(StrEnum):
    """What happens to what an object wrote when the object is deleted."""

    DELETE = "Delete"
    RETAIN = "Retain"


def parse_duration(value: str) -> float:
    """Seconds in a Go-style duration string ("1h30m", "45s", "0")."""
    if value == "0":
        return 0.0
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"invalid duration {value!r}")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))


class Model(BaseModel):
    """Base of every CRD model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )


class CheckedModel(Model):
    """A model with rules across its fields (the CEL rules of its schema, in Python): the first
    problem that problems() names refuses it."""

    def problems(self) -> list[str]:
        return []

    @model_validator(mode="after")
    def _no_problems(self) -> Self:
        found = self.problems()
        if found:
            raise ValueError(found[0])
        return self


class Condition(Model):
    """A status condition in the shape of metav1.Condition."""

    type: str = Field(
        description="The condition's type, unique in the list: Ready on every kind (whether "
        "the last reconcile of the spec succeeded); after a failure Reconciling (retried, it "
        "may heal by itself) or Stalled (a person must change something); Restarted on an "
        "object with rolling restarts; RotationRequest on a VaultSecret whose "
        "vaultsync.io/rotate annotation is ignored (it has no spec.rotation)."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="Why, in one CamelCase word, e.g. Synced or PermissionDenied; the guide of "
        "each kind lists its reasons."
    )
    message: str = Field(default="", description="What happened, in words, for people.")
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339); a new reason or message alone does "
        "not move it."
    )
    observed_generation: int = Field(
        default=0, description="The metadata.generation of the spec this condition was set for."
    )


class ConditionedStatus(Model):
    """Status fields every kind shares: kstatus and Argo CD read these."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = Field(
        default=None,
        description="The metadata.generation of the spec last reconciled; 0 until the "
        "operator first records an outcome.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="The object's conditions, at most one per type (a list map keyed by type), "
        "as kstatus, Argo CD and `kubectl wait --for=condition=Ready` read them.",
    )


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: Any, reason: str = "InvalidSpec") -> M:
    """raw validated as model, or a non-retryable SyncError naming the first problem."""
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["spec", *(str(p) for p in first["loc"])])
        raise SyncError(f"{where}: {first['msg']}", reason=reason, retryable=False) from None
