"""Audit devices: list, enable, disable.

OpenBao >= 2.3.2 refuses API-created audit devices unless the server config sets
`unsafe_allow_api_audit_creation`; since 2.4 devices can instead be declared in the
server config (`audit` blocks), and those cannot be disabled over the API either.
Both refusals become errors with their own reasons, so that callers can report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hvac

from vaultsync.vault.errors import InvalidRequest, VaultError, translate
from vaultsync.vault.observe import request

_API_DISABLED = "cannot enable audit device via api"
_CONFIG_MANAGED = "cannot disable configuration-managed audit device"
_PATH_IN_USE = "path already in use"


class AuditAPIDisabled(VaultError):
    """The server refuses API-created devices: only its configuration (and a restart) helps."""

    reason = "AuditAPIDisabled"
    retryable = False


class AuditDeviceDeclared(VaultError):
    """The device is declared in the server's config; only the config can remove it."""

    reason = "AuditDeviceDeclared"


class AuditPathInUse(VaultError):
    reason = "AuditPathInUse"


@dataclass(frozen=True)
class AuditDevice:
    path: str
    type: str
    description: str = ""
    options: dict[str, str] = field(default_factory=dict)
    local: bool = False


@request("audit_list")
def list_devices(client: hvac.Client) -> dict[str, AuditDevice]:
    """Enabled devices by path (without the trailing slash)."""
    try:
        response = client.sys.list_enabled_audit_devices()
    except Exception as exc:
        raise translate(exc, "list audit devices") from None
    devices = {}
    for mount, info in (response.get("data") or {}).items():
        path = mount.rstrip("/")
        devices[path] = AuditDevice(
            path=path,
            type=str(info.get("type", "")),
            description=str(info.get("description") or ""),
            options={str(k): str(v) for k, v in (info.get("options") or {}).items()},
            local=bool(info.get("local")),
        )
    return devices


@request("audit_enable")
def enable(client: hvac.Client, device: AuditDevice) -> None:
    where = f"enable audit device {device.path!r}"
    try:
        client.sys.enable_audit_device(
            device.type,
            path=device.path,
            description=device.description,
            options=device.options,
            local=device.local,
        )
    except Exception as exc:
        error = translate(exc, where)
        text = str(error).lower()
        if isinstance(error, InvalidRequest) and _API_DISABLED in text:
            raise AuditAPIDisabled(
                f"{where}: the server refuses API-created audit devices. Set "
                "`unsafe_allow_api_audit_creation = true` in the OpenBao server config, or "
                f'declare the device in the server config instead (`audit "{device.type}" '
                f'"{device.path}" {{ ... }}`, OpenBao >= 2.4), then restart or SIGHUP the server'
            ) from None
        if isinstance(error, InvalidRequest) and _PATH_IN_USE in text:
            raise AuditPathInUse(str(error)) from None
        raise error from None


@request("audit_disable")
def disable(client: hvac.Client, path: str) -> None:
    """Disable a device; disabling a missing one is not an error."""
    where = f"disable audit device {path!r}"
    try:
        client.sys.disable_audit_device(path)
    except Exception as exc:
        error = translate(exc, where)
        if isinstance(error, InvalidRequest) and _CONFIG_MANAGED in str(error).lower():
            raise AuditDeviceDeclared(str(error)) from None
        raise error from None
