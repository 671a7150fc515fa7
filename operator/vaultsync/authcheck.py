"""VaultAuth readiness: its spec is usable and its VaultConnection exists.

Logging in is left to the objects that use it: with Kubernetes auth the identity is the
consuming namespace's ServiceAccount, so there is no single login to try here.
"""

from __future__ import annotations

from typing import Any

from vaultsync import metrics
from vaultsync.api.auth import VaultAuthSpec
from vaultsync.api.base import parse
from vaultsync.errors import SyncError
from vaultsync.kube.api import Kube
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.report import Outcome, record
from vaultsync.tenancy import SpecLookup, endpoint_for

PLURAL = "vaultauths"


class AuthChecker:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._credentials = KubeCredentials(kube)

    def check(self, body: dict[str, Any], connections: SpecLookup) -> Outcome:
        try:
            spec = parse(VaultAuthSpec, body.get("spec"), reason="InvalidAuth")
            endpoint = endpoint_for(
                spec.connection_ref, connections, self._credentials.secret_value
            )
            if spec.token is not None:
                ref = spec.token.secret_ref
                self._credentials.secret_value(body["metadata"]["namespace"], ref.name, ref.key)
        except SyncError as exc:
            return Outcome.failed(exc)
        method = "kubernetes" if spec.kubernetes is not None else "token"
        return Outcome(True, "Valid", f"{method} auth via {endpoint.address}")

    def reconcile(self, body: dict[str, Any], connections: SpecLookup) -> Outcome:
        outcome = self.check(body, connections)
        metrics.SYNCS.labels("VaultAuth", outcome.reason).inc()
        record(self.kube, PLURAL, body, outcome, {})
        return outcome
