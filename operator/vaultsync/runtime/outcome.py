"""What one reconcile came to: the Ready condition's content and the status fields to record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync.runtime.conditions import ConditionUpdate
from vaultsync.runtime.errors import SyncError


@dataclass(frozen=True)
class Outcome:
    """What one reconcile came to; `written` when it changed something (Secret or Vault)."""

    ready: bool
    reason: str
    message: str
    retryable: bool = True
    version: int | None = None
    written: bool = False
    wake_after: float | None = None
    """Seconds after which the object wants a reconcile, when sooner than its usual wait."""
    conditions: tuple[ConditionUpdate, ...] = ()
    """Conditions besides Ready to set or remove (none: the others stay as they are)."""

    @classmethod
    def failed(cls, error: SyncError, keeps: str = "") -> Outcome:
        """Ready=False for error; keeps: what the Secret keeps meanwhile, said after it."""
        message = f"{error}; the Secret keeps {keeps}" if keeps else str(error)
        return cls(False, error.reason, message, retryable=error.retryable)


@dataclass(frozen=True)
class Result:
    """An outcome plus the kind's own status fields (besides conditions)."""

    outcome: Outcome
    fields: Mapping[str, Any] = field(default_factory=dict)
