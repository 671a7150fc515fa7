"""VaultAuditDevice: an audit device kept enabled in Vault (cluster-scoped)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from vaultsync.api.base import ConditionedStatus, DeletionPolicy, K8sName, Model
from vaultsync.api.names import AuditPath


class AuditType(StrEnum):
    FILE = "file"
    SOCKET = "socket"
    SYSLOG = "syslog"


class VaultAuditDeviceSpec(Model):
    auth_ref: K8sName = Field(
        default="default",
        description="VaultAuth in the operator's namespace that the operator logs in with.",
    )
    type: AuditType
    path: AuditPath = Field(
        description="Where the device is mounted (sys/audit/<path>); immutable.",
    )
    description: str = Field(default="", max_length=1024)
    options: dict[str, str] = Field(
        default_factory=dict, description="Device options, e.g. file_path for a file device."
    )
    local: bool = Field(default=False, description="Not replicated to performance secondaries.")
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="Retain (default): deleting this object leaves the device enabled. Delete: "
        "disable it, but only if vaultsync enabled it.",
    )


VAULT_AUDIT_DEVICE_RULES = [
    {
        "rule": "self.path == oldSelf.path",
        "message": "path is immutable; create another VaultAuditDevice for another path",
    },
]


class VaultAuditDeviceStatus(ConditionedStatus):
    managed: bool | None = Field(
        default=None,
        description="True when vaultsync enabled the device at spec.path; false when it was "
        "already there (API-created by someone else, or declared in the server's config).",
    )
