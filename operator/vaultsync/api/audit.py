"""VaultAuditDevice: an audit device kept enabled in Vault (cluster-scoped)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field

from vaultsync.api.base import ConditionedStatus, DeletionPolicy, K8sName, Model
from vaultsync.api.names import AuditPath


class AuditType(StrEnum):
    FILE = "file"
    SOCKET = "socket"
    SYSLOG = "syslog"


class VaultAuditDeviceSpec(Model):
    """The audit device to keep enabled at path."""

    auth_ref: K8sName = Field(
        default="default",
        description="VaultAuth in the operator's namespace that the operator logs in with.",
    )
    type: AuditType = Field(description="The device type: file, socket or syslog.")
    path: AuditPath = Field(
        description="Where the device is mounted (sys/audit/<path>); immutable.",
    )
    description: str = Field(
        default="",
        max_length=1024,
        description="The device's description in Vault, after vaultsync's marker: vaultsync "
        "enables the device with the description 'managed-by: vaultsync "
        "VaultAuditDevice/<name>; <description>'.",
    )
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Device options as strings, e.g. file_path for a file device, address and "
        "socket_type for a socket device, tag for syslog, log_raw. A file device's file_path "
        "(or path) must lie in the operator's VAULTSYNC_AUDIT_FILE_DIRS, or be stdout or "
        "discard (FilePathNotAllowed otherwise).",
    )
    acknowledge_insecure_options: bool = Field(
        default=False,
        description="Set to true to accept options that weaken the audit trail, which are "
        "refused otherwise: log_raw true (secrets logged in plain text), hmac_accessor false "
        "(token accessors logged in plain text) and, for a file device, a mode with the group "
        'or other read bit (e.g. "0644") or "0" (the file keeps whatever mode it has). A '
        "Warning Event (InsecureAuditOptions) is raised while such a device is enabled.",
    )
    local: bool = Field(
        default=False,
        description="A local device: not replicated to performance secondaries.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="Retain: deleting this object leaves the device enabled. Delete: disable "
        "it, but only if vaultsync enabled it.",
    )


# Options that weaken the audit trail. Vault parses log_raw and hmac_accessor with Go's
# strconv.ParseBool, refusing any other spelling, and a file device's mode with
# strconv.ParseUint(mode, 8, 32); mode 0 means "leave the file's mode as it is".
TRUE_SPELLINGS = ("1", "t", "T", "TRUE", "true", "True")
FALSE_SPELLINGS = ("0", "f", "F", "FALSE", "false", "False")
OTHERS_CAN_READ = 0o044
READABLE_MODE_PATTERN = "^[0-7]*[4-7][0-7]?$"  # the group or the other digit has the read bit
KEPT_MODE_PATTERN = "^0+$"
ACKNOWLEDGE = "acknowledgeInsecureOptions"


@dataclass(frozen=True)
class InsecureOption:
    """An option that weakens the audit trail, and what it does."""

    option: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.option}={self.value}"


def insecure_options(type_: AuditType, options: Mapping[str, str]) -> list[InsecureOption]:
    """The options that need spec.acknowledgeInsecureOptions: the CEL rules below, in Python."""
    found = []
    if options.get("log_raw") in TRUE_SPELLINGS:
        effect = "secrets in requests and responses are logged in plain text, not HMAC-hashed"
        found.append(InsecureOption("log_raw", options["log_raw"], effect))
    if options.get("hmac_accessor") in FALSE_SPELLINGS:
        effect = "token accessors are logged in plain text (an accessor can look up or revoke it)"
        found.append(InsecureOption("hmac_accessor", options["hmac_accessor"], effect))
    mode = options.get("mode")
    if type_ == AuditType.FILE and mode is not None and re.fullmatch("[0-7]+", mode):
        if int(mode, 8) == 0:
            effect = "the log file keeps the mode it already has, which vaultsync cannot check"
            found.append(InsecureOption("mode", mode, effect))
        elif int(mode, 8) & OTHERS_CAN_READ:
            effect = "users other than the log file's owner can read the audit log"
            found.append(InsecureOption("mode", mode, effect))
    return found


_ACKNOWLEDGED = f"(has(self.{ACKNOWLEDGE}) && self.{ACKNOWLEDGE})"
_UNLESS_ACKNOWLEDGED = f" unless {ACKNOWLEDGE} is true"


def _option_is(option: str, test: str) -> str:
    return f"has(self.options) && '{option}' in self.options && {test}"


VAULT_AUDIT_DEVICE_RULES = [
    {
        "rule": "self.path == oldSelf.path",
        "message": "path is immutable; create another VaultAuditDevice for another path",
    },
    {
        "rule": f"{_ACKNOWLEDGED} || !("
        + _option_is("log_raw", f"self.options['log_raw'] in {list(TRUE_SPELLINGS)}")
        + ")",
        "message": "options.log_raw true logs secrets in plain text; it is refused"
        + _UNLESS_ACKNOWLEDGED,
    },
    {
        "rule": f"{_ACKNOWLEDGED} || !("
        + _option_is("hmac_accessor", f"self.options['hmac_accessor'] in {list(FALSE_SPELLINGS)}")
        + ")",
        "message": "options.hmac_accessor false logs token accessors in plain text; it is "
        "refused" + _UNLESS_ACKNOWLEDGED,
    },
    {
        "rule": f"{_ACKNOWLEDGED} || self.type != 'file' || !("
        + _option_is(
            "mode",
            f"(self.options['mode'].matches('{READABLE_MODE_PATTERN}')"
            f" || self.options['mode'].matches('{KEPT_MODE_PATTERN}'))",
        )
        + ")",
        "message": "options.mode lets other users read the audit log (group or other read "
        'bit), or is "0" (the file keeps whatever mode it has); it is refused'
        + _UNLESS_ACKNOWLEDGED,
    },
]


class VaultAuditDeviceStatus(ConditionedStatus):
    """Whether vaultsync enabled the device, and the weakening options it accepted."""

    managed: bool | None = Field(
        default=None,
        description="True when vaultsync enabled the device at spec.path; false when it was "
        "already there (API-created by someone else, or declared in the server's config). "
        "Recorded before the enable call, and in Vault too: the device's description starts "
        "with 'managed-by: vaultsync VaultAuditDevice/<name>', so an object re-created from "
        "its manifest without status recognises the device it enabled.",
    )
    insecure_options: list[str] | None = Field(
        default=None,
        description="Options that weaken the audit trail, in effect because "
        "spec.acknowledgeInsecureOptions accepts them (e.g. log_raw=true).",
    )
