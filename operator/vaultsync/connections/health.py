"""VaultConnection health: Ready when the server answers, is initialised and unsealed.

This is what `kubectl get vaultconnections`, Argo CD and kstatus show; it needs no
Vault login, so it is the same for every tenant that uses the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from vaultsync import GROUP, VERSION
from vaultsync.connections.identity import Identities
from vaultsync.kube.api import Kube, describe
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.vault.health import seal_status
from vaultsync.vault.sessions import Sessions


class VaultConnectionReconciler:
    kind = "VaultConnection"
    plural = "vaultconnections"

    def __init__(self, kube: Kube, _sessions: Sessions, settings: Settings) -> None:
        self.identities = Identities(kube, settings.namespace)

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        name = body["metadata"]["name"]
        try:
            own = View(connections=lambda _ns, _name: body.get("spec"))
            endpoint = self.identities.endpoint(name, own)
            health = seal_status(endpoint)
        except SyncError as exc:
            return Result(Outcome.failed(exc))
        fields = {"serverVersion": health.version, "sealed": health.sealed}
        if not health.initialized:
            outcome = Outcome(False, "VaultNotInitialized", f"{endpoint.address}: not initialised")
        elif health.sealed:
            outcome = Outcome(False, "VaultSealed", f"{endpoint.address} is sealed")
        else:
            outcome = Outcome(
                True, "Reachable", f"{endpoint.address} answers, unsealed, {health.version}"
            )
        return Result(outcome, fields)


def default_connection_problem(
    kube: Kube, operator_namespace: str, name: str = "default"
) -> str | None:
    """For the readiness report: None if Vault answers, initialised and unsealed, at the
    address of VaultConnection `name` (read from the API, its CA from its Secret), else why not.
    Unauthenticated (sys/seal-status), like the VaultConnection's own Ready condition."""
    try:
        raw: Any = kube.custom.get_cluster_custom_object(GROUP, VERSION, "vaultconnections", name)
    except ApiException as exc:
        if exc.status == 404:
            return f"no VaultConnection {name!r}"
        return f"cannot read VaultConnection {name!r}: {describe(exc)}"
    identities = Identities(kube, operator_namespace)
    try:
        endpoint = identities.endpoint(name, View(connections=lambda _ns, _name: raw.get("spec")))
        health = seal_status(endpoint)
    except SyncError as exc:
        return f"{exc.reason}: {exc}"
    if not health.initialized:
        return f"{endpoint.address}: not initialised"
    if health.sealed:
        return f"{endpoint.address} is sealed"
    return None
