"""Who enabled an audit device, recorded in Vault: the start of its description. Pure.

status.managed is dropped by GitOps tools and most backups, and an object re-created from its
manifest starts without it: from status alone, a device vaultsync had enabled would then look
pre-existing and never be disabled. So vaultsync enables every device with a description that
starts with a marker naming the VaultAuditDevice, followed by the spec's description:

    managed-by: vaultsync VaultAuditDevice/file; the spec's description

The owner is the kind and name, not the uid, so the same manifest applied again is the same
owner. The marker is set by the enable call itself (audit devices cannot be changed in place,
so it is there for the device's whole life, and a crash cannot separate the device from it),
and only ever read from the start: vaultsync always writes its own marker before the spec's
text, so no spec can forge one; enabling a device directly needs `sudo` on `sys/audit`.
A device enabled by an older vaultsync has no marker (and cannot get one without being
disabled): its ownership stays in status.
"""

from __future__ import annotations

import re
from dataclasses import replace

from vaultsync.vault.audit import AuditDevice

KIND = "VaultAuditDevice"
PREFIX = "managed-by: vaultsync "
SEPARATOR = "; "
_MARKER = re.compile(
    "managed-by: vaultsync (?P<owner>VaultAuditDevice/[a-z0-9][-a-z0-9.]*)(?:; .*)?", re.DOTALL
)


def owner_id(name: str) -> str:
    """The owner a VaultAuditDevice named `name` writes into its device's description."""
    return f"{KIND}/{name}"


def stamped(device: AuditDevice, owner: str) -> AuditDevice:
    """The device as vaultsync enables it: the marker, then the spec's description."""
    marker = PREFIX + owner
    description = marker + SEPARATOR + device.description if device.description else marker
    return replace(device, description=description)


def owner_of(description: str) -> str | None:
    """The owner a description's marker names; None without a marker."""
    found = _MARKER.fullmatch(description)
    return found["owner"] if found else None
