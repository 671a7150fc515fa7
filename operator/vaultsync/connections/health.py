"""VaultConnection health: Ready when the server answers, is initialised and unsealed.

This is what `kubectl get vaultconnections`, Argo CD and kstatus show; it needs no
Vault login, so it is the same for every tenant that uses the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vaultsync.connections.identity import Identities
from vaultsync.kube.api import Kube
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
