"""VaultAuditDevice reconciliation: an audit device kept enabled.

Losing audit is worse than keeping it, so the rules are conservative:

- A missing device is enabled (again). `status.managed` is set to true *before* the
  enable call, so a crash in between cannot make vaultsync forget that it owns it.
  The device's description starts with a marker naming the VaultAuditDevice
  (ownership.py), set by the enable call itself: status does not survive a restore
  from the manifest, the marker does, so a re-created object takes the device it
  enabled as its own again. A device enabled by an older vaultsync has no marker and
  is compared with the spec's description as it is (status alone says it is ours).
- A device already at the path that vaultsync did not enable (declared in the
  server's config, or created by someone else: no marker naming this object) counts
  as present and is left alone.
- A device vaultsync enabled whose settings differ from the spec is reported, not
  re-created: audit devices cannot be changed in place, and disabling one to
  re-create it stops audit meanwhile, for good if the server (OpenBao >= 2.3.2
  without `unsafe_allow_api_audit_creation`) then refuses the re-creation.
- Within one operator process the ownership last recorded is remembered by uid,
  because the object's body may lag behind our own status patches.
- The reconciler never disables anything. Deleting the object disables the device
  only with deletionPolicy Delete, and only if vaultsync enabled it (status or the
  marker says so).
- Before anything reaches Vault the spec passes the guards (guards.py): file devices
  write only inside the allowed directories, and options that weaken audit need
  spec.acknowledgeInsecureOptions. With it they are recorded in status.insecureOptions
  and the Ready message, and a Warning Event (InsecureAuditOptions) is raised when the
  device is first seen enabled so, then every INSECURE_WARNING_EVERY while it stays so:
  Kubernetes drops Events after an hour (the API server's default --event-ttl), so one
  is always there to see, without an Event at every resync.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import hvac

from vaultsync.api.audit import InsecureOption, VaultAuditDeviceSpec, insecure_options
from vaultsync.api.base import DeletionPolicy, parse
from vaultsync.audit.guards import Reminders, describe, refusal
from vaultsync.audit.ownership import owner_id, owner_of, stamped
from vaultsync.connections.identity import Identities
from vaultsync.kube import events
from vaultsync.kube.api import Kube
from vaultsync.kube.claims import Claim, Claims
from vaultsync.kube.logref import about
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.vault import audit
from vaultsync.vault.audit import AuditDevice, AuditDeviceDeclared
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.errors import VaultUnavailable
from vaultsync.vault.sessions import Sessions

log = logging.getLogger(__name__)
INSECURE_WARNING_EVERY = 50 * 60.0  # seconds; under the 1 h that Events live by default
INSECURE_EVENT = "InsecureAuditOptions"


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
    other = owner_of(current.description)
    if current.type != wanted.type:
        message = (
            f"{where} is a {current.type} device that vaultsync did not enable, "
            f"not a {wanted.type} device; vaultsync leaves it alone"
        )
        return AuditResult(Outcome(False, "PathConflict", message, retryable=False), False)
    differ = differences(current, wanted)
    how = (
        f"vaultsync enabled it for {other}, not for this object"
        if other
        else "declared in the server config or created by someone else"
    )
    message = (
        f"{where} already exists and was not enabled by vaultsync for this object ({how}); "
        "vaultsync counts it as present and leaves it alone"
        + (f"; it differs from the spec in {', '.join(differ)}" if differ else "")
    )
    return AuditResult(Outcome(True, "AlreadyPresent", message), False)


def converge(
    client: hvac.Client, wanted: AuditDevice, owner: str, managed: bool, claim: Claim
) -> AuditResult:
    """Keep `wanted` (the spec's device) enabled, with owner's marker in its description;
    `managed`: status says vaultsync enabled what is at its path (the marker may say so too).
    """
    current = audit.list_devices(client).get(wanted.path)
    marked = stamped(wanted, owner)
    if current is None:
        return _enable(client, marked, managed, claim)
    mine = owner_of(current.description) == owner
    if not (managed or mine):
        return _unmanaged(current, wanted)
    differ = differences(current, marked if mine else wanted)
    if differ:
        message = (
            f"audit device {wanted.path!r} differs from the spec in {', '.join(differ)}. Audit "
            "devices cannot be changed in place and vaultsync does not disable one to re-create "
            f"it: disable it in Vault (`bao audit disable {wanted.path}`) and vaultsync enables "
            "it as specified"
        )
        return AuditResult(Outcome(False, "DeviceDiffers", message, retryable=False), True)
    message = f"{wanted.type} audit device {wanted.path!r} is enabled"
    if not mine:
        message += (
            " (enabled by an earlier vaultsync without an ownership marker in its description: "
            "only status records that vaultsync enabled it)"
        )
    return AuditResult(Outcome(True, "Enabled", message), True)


def remove(client: hvac.Client, path: str, *, managed: bool, owner: str) -> str:
    """Disable the device at path if vaultsync enabled it: status says so (managed) or its
    description's marker names owner; what was done, for an Event."""
    if not managed:
        current = audit.list_devices(client).get(path)
        if current is None:
            return f"no audit device at {path!r}: nothing to disable"
        if owner_of(current.description) != owner:
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

    def __init__(self, kube: Kube, sessions: Sessions, settings: Settings) -> None:
        self.kube = kube
        self.sessions = sessions
        self.identities = Identities(kube, settings.namespace)
        self.file_dirs = settings.audit_file_dirs
        self.reminders = Reminders(INSECURE_WARNING_EVERY)
        self.claims = Claims(kube, self.plural)

    @staticmethod
    def _owner(body: Mapping[str, Any]) -> str:
        return owner_id(body["metadata"]["name"])

    def _converge(
        self, body: Mapping[str, Any], spec: VaultAuditDeviceSpec, view: View
    ) -> AuditResult:
        managed = self.claims.managed(body)
        refused = refusal(spec, self.file_dirs)
        if refused is not None:
            return AuditResult(refused, managed)
        try:
            identity = self.identities.operator(spec.auth_ref, view)
            return with_client(
                self.sessions,
                identity,
                lambda client: converge(
                    client, device_of(spec), self._owner(body), managed, self.claims.claim(body)
                ),
            )
        except SyncError as exc:
            return AuditResult(Outcome.failed(exc), managed)

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        uid = body["metadata"]["uid"]
        try:
            spec = parse(VaultAuditDeviceSpec, body.get("spec"))
        except SyncError as exc:
            self.reminders.forget(uid)
            return Result(Outcome.failed(exc), {"managed": self.claims.managed(body)})
        result = self._converge(body, spec, view)
        self.claims.remember(body, result.managed)
        fields: dict[str, Any] = {"managed": result.managed}
        outcome = result.outcome
        accepted = (
            insecure_options(spec.type, spec.options) if spec.acknowledge_insecure_options else []
        )
        if accepted:
            fields["insecureOptions"] = [str(item) for item in accepted]
        elif (body.get("status") or {}).get("insecureOptions"):
            fields["insecureOptions"] = None  # a merge patch removes it
        if accepted and outcome.ready:
            outcome = replace(
                outcome,
                message=f"{outcome.message}; weakened as spec.acknowledgeInsecureOptions "
                f"accepts: {describe(accepted)}",
            )
            self._warn(body, spec.path, accepted)
        else:
            self.reminders.forget(uid)
        return Result(outcome, fields)

    def _warn(self, body: Mapping[str, Any], path: str, accepted: list[InsecureOption]) -> None:
        """The Warning Event while an acknowledged insecure device is enabled (see above)."""
        if self.reminders.due(body["metadata"]["uid"], tuple(str(item) for item in accepted)):
            message = (
                f"audit device {path!r} is enabled with options that weaken the audit trail, "
                f"accepted by spec.acknowledgeInsecureOptions: {describe(accepted)}"
            )
            log.warning(
                "VaultAuditDevice %s: %s", body["metadata"]["name"], message, extra=about(body)
            )
            events.emit(self.kube, body, warning=True, reason=INSECURE_EVENT, message=message)

    def needs_cleanup(self, body: Mapping[str, Any]) -> bool:
        return True  # the audit device it may have enabled in Vault

    def forget(self, body: Mapping[str, Any]) -> None:
        self.claims.forget(body)

    def cleanup(self, body: Mapping[str, Any], view: View) -> str:
        """Disable the device on deletion when the spec and ownership allow; raises SyncError.

        Status saying vaultsync enabled it is enough (and then deletion waits for Vault).
        Without that, the device's marker is asked for (an object re-created from its
        manifest and deleted before its first sync), best effort: if Vault cannot be asked,
        the device stays enabled and the object goes (keeping audit is the safe side).
        """
        spec = body.get("spec") or {}
        path = str(spec.get("path", ""))
        auth_ref = spec.get("authRef") or "default"
        if spec.get("deletionPolicy", DeletionPolicy.RETAIN) != DeletionPolicy.DELETE:
            message = f"audit device {path!r} left enabled: deletionPolicy is Retain"
        elif self.claims.managed(body):
            message = self._disable(body, auth_ref, path, view, managed=True)
        else:
            try:
                message = self._disable(body, auth_ref, path, view, managed=False)
            except SyncError as exc:
                message = (
                    f"audit device {path!r} left enabled: status does not record that vaultsync "
                    f"enabled it, and Vault could not be asked for its marker: {exc}"
                )
        self.claims.forget(body)
        self.reminders.forget(body["metadata"]["uid"])
        return message

    def _disable(
        self, body: Mapping[str, Any], auth_ref: str, path: str, view: View, *, managed: bool
    ) -> str:
        owner = self._owner(body)
        try:
            identity = self.identities.operator(auth_ref, view)
            return with_client(
                self.sessions,
                identity,
                lambda client: remove(client, path, managed=managed, owner=owner),
            )
        except SyncError as exc:
            raise SyncError(
                f"{exc} (set spec.deletionPolicy to Retain to delete without disabling)",
                reason=exc.reason,
            ) from None
