"""VaultConnection health: Ready when the server answers, is initialised and unsealed.

This is what `kubectl get vaultconnections`, Argo CD and kstatus show; it needs no
Vault login, so it is the same for every tenant that uses the connection.
"""

from __future__ import annotations

from typing import Any

from vaultsync import metrics
from vaultsync.errors import SyncError
from vaultsync.kube.api import Kube
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.report import Outcome, record
from vaultsync.tenancy import endpoint_for
from vaultsync.vault.health import seal_status

PLURAL = "vaultconnections"


class ConnectionChecker:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._credentials = KubeCredentials(kube)

    def reconcile(self, body: dict[str, Any]) -> Outcome:
        name = body["metadata"]["name"]
        fields: dict[str, Any] = {}
        try:
            endpoint = endpoint_for(
                name, lambda _ns, _name: body.get("spec"), self._credentials.secret_value
            )
            health = seal_status(endpoint)
        except SyncError as exc:
            outcome = Outcome.failed(exc)
        else:
            fields = {"serverVersion": health.version, "sealed": health.sealed}
            if not health.initialized:
                outcome = Outcome(
                    False, "VaultNotInitialized", f"{endpoint.address}: not initialised"
                )
            elif health.sealed:
                outcome = Outcome(False, "VaultSealed", f"{endpoint.address} is sealed")
            else:
                outcome = Outcome(
                    True, "Reachable", f"{endpoint.address} answers, unsealed, {health.version}"
                )
        metrics.SYNCS.labels("VaultConnection", outcome.reason).inc()
        record(self.kube, PLURAL, body, outcome, fields)
        return outcome
