"""VaultAuditDevice reconciliation: an audit device kept enabled.

Losing audit is worse than keeping it, so the rules are conservative:

- A missing device is enabled (again). `status.managed` is set to true *before* the
  enable call, so a crash in between cannot make vaultsync forget that it owns it.
- A device already at the path that vaultsync did not enable (declared in the
  server's config, or created by someone else) counts as present and is left alone.
- A device vaultsync enabled whose settings differ from the spec is reported, not
  re-created: audit devices cannot be changed in place, and disabling one to
  re-create it stops audit meanwhile, for good if the server (OpenBao >= 2.3.2
  without `unsafe_allow_api_audit_creation`) then refuses the re-creation.
- Within one operator process the ownership last recorded is remembered by uid,
  because the object's body may lag behind our own status patches.
- The reconciler never disables anything. Deleting the object disables the device
  only with deletionPolicy Delete, and only if vaultsync enabled it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import hvac

from vaultsync.api.audit import VaultAuditDeviceSpec
from vaultsync.api.base import DeletionPolicy, parse
from vaultsync.connections.identity import operator_identity
from vaultsync.kube import status
from vaultsync.kube.api import Kube
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.view import View
from vaultsync.vault import audit
from vaultsync.vault.audit import AuditDevice, AuditDeviceDeclared
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.errors import VaultUnavailable
from vaultsync.vault.sessions import Sessions

Claim = Callable[[bool], None]


@dataclass(frozen=True)
class AuditResult:
    outcome: Outcome
    managed: bool


def device_of(spec: VaultAuditDeviceSpec) -> AuditDevice:
    return AuditDevice(
        path=spec.path,
        type=spec.type.value,
        description=spec.description,
        options=dict(spec.options),
        local=spec.local,
    )


def differences(current: AuditDevice, wanted: AuditDevice) -> list[str]:
    fields = ("type", "description", "options", "local")
    return [f for f in fields if getattr(current, f) != getattr(wanted, f)]


def _enable(client: hvac.Client, wanted: AuditDevice, managed: bool, claim: Claim) -> AuditResult:
    if not managed:
        claim(True)
    try:
        audit.enable(client, wanted)
    except VaultUnavailable as exc:  # it may have been enabled after all: keep the claim
        return AuditResult(Outcome.failed(exc), True)
    except SyncError as exc:
        return AuditResult(Outcome.failed(exc), False)
    reason = "Reenabled" if managed else "Enabled"
    message = f"{wanted.type} audit device {wanted.path!r} enabled"
    return AuditResult(Outcome(True, reason, message, written=True), True)


def _unmanaged(current: AuditDevice, wanted: AuditDevice) -> AuditResult:
    where = f"audit device {wanted.path!r}"
    if current.type != wanted.type:
        message = (
            f"{where} is a {current.type} device that vaultsync did not enable, "
            f"not a {wanted.type} device; vaultsync leaves it alone"
        )
        return AuditResult(Outcome(False, "PathConflict", message, retryable=False), False)
    differ = differences(current, wanted)
    message = (
        f"{where} already exists and was not enabled by vaultsync (declared in the server "
        "config or created by someone else); vaultsync counts it as present and leaves it alone"
        + (f"; it differs from the spec in {', '.join(differ)}" if differ else "")
    )
    return AuditResult(Outcome(True, "AlreadyPresent", message), False)


def converge(client: hvac.Client, wanted: AuditDevice, managed: bool, claim: Claim) -> AuditResult:
    """Keep `wanted` enabled; `managed` says whether vaultsync enabled what is at its path."""
    current = audit.list_devices(client).get(wanted.path)
    if current is None:
        return _enable(client, wanted, managed, claim)
    if not managed:
        return _unmanaged(current, wanted)
    differ = differences(current, wanted)
    if differ:
        message = (
            f"audit device {wanted.path!r} differs from the spec in {', '.join(differ)}. Audit "
            "devices cannot be changed in place and vaultsync does not disable one to re-create "
            f"it: disable it in Vault (`bao audit disable {wanted.path}`) and vaultsync enables "
            "it as specified"
        )
        return AuditResult(Outcome(False, "DeviceDiffers", message, retryable=False), True)
    message = f"{wanted.type} audit device {wanted.path!r} is enabled"
    return AuditResult(Outcome(True, "Enabled", message), True)


def remove(client: hvac.Client, path: str, managed: bool) -> str:
    """Disable the device at path if vaultsync enabled it; what was done, for an Event."""
    if not managed:
        return f"audit device {path!r} left enabled: vaultsync did not enable it"
    try:
        audit.disable(client, path)
    except AuditDeviceDeclared:
        return f"audit device {path!r} left enabled: it is declared in the server config"
    return f"audit device {path!r} disabled"


class VaultAuditDeviceReconciler:
    """Everything a VaultAuditDevice reconcile needs; one instance per operator."""

    kind = "VaultAuditDevice"
    plural = "vaultauditdevices"

    def __init__(self, kube: Kube, sessions: Sessions, operator_namespace: str) -> None:
        self.kube = kube
        self.sessions = sessions
        self.operator_namespace = operator_namespace
        self._credentials = KubeCredentials(kube)
        self._known: dict[str, bool] = {}

    def _managed(self, body: Mapping[str, Any]) -> bool:
        uid = body["metadata"]["uid"]
        if uid in self._known:
            return self._known[uid]
        return bool((body.get("status") or {}).get("managed"))

    def _claim(self, body: Mapping[str, Any]) -> Claim:
        def claim(managed: bool) -> None:
            status.patch(
                self.kube, self.plural, None, body["metadata"]["name"], {"managed": managed}
            )
            self._known[body["metadata"]["uid"]] = managed

        return claim

    def _converge(self, body: Mapping[str, Any], view: View) -> AuditResult:
        managed = self._managed(body)
        try:
            spec = parse(VaultAuditDeviceSpec, body.get("spec"))
        except SyncError as exc:
            return AuditResult(Outcome.failed(exc), managed)
        try:
            identity = operator_identity(
                spec.auth_ref, view, self._credentials.secret_value, self.operator_namespace
            )
            return with_client(
                self.sessions,
                identity,
                lambda client: converge(client, device_of(spec), managed, self._claim(body)),
            )
        except SyncError as exc:
            return AuditResult(Outcome.failed(exc), managed)

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        result = self._converge(body, view)
        self._known[body["metadata"]["uid"]] = result.managed
        return Result(result.outcome, {"managed": result.managed})

    def cleanup(self, body: Mapping[str, Any], view: View) -> str:
        """Disable the device on deletion when the spec and ownership allow; raises SyncError."""
        spec = body.get("spec") or {}
        path = str(spec.get("path", ""))
        if spec.get("deletionPolicy", DeletionPolicy.RETAIN) != DeletionPolicy.DELETE:
            message = f"audit device {path!r} left enabled: deletionPolicy is Retain"
        elif not self._managed(body):
            message = f"audit device {path!r} left enabled: vaultsync did not enable it"
        else:
            message = self._disable(spec.get("authRef") or "default", path, view)
        self._known.pop(body["metadata"]["uid"], None)
        return message

    def _disable(self, auth_ref: str, path: str, view: View) -> str:
        try:
            identity = operator_identity(
                auth_ref, view, self._credentials.secret_value, self.operator_namespace
            )
            return with_client(self.sessions, identity, lambda client: remove(client, path, True))
        except SyncError as exc:
            raise SyncError(
                f"{exc} (set spec.deletionPolicy to Retain to delete without disabling)",
                reason=exc.reason,
            ) from None
