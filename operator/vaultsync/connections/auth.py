"""VaultAuth readiness: its spec is usable and its VaultConnection exists.

Logging in is left to the objects that use it: with Kubernetes auth the identity is the
consuming namespace's ServiceAccount, so there is no single login to try here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vaultsync.api.auth import VaultAuthSpec
from vaultsync.api.base import parse
from vaultsync.connections.identity import Identities
from vaultsync.kube.api import Kube
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.vault.sessions import Sessions


class VaultAuthReconciler:
    kind = "VaultAuth"
    plural = "vaultauths"

    def __init__(self, kube: Kube, _sessions: Sessions, settings: Settings) -> None:
        self.identities = Identities(kube, settings.namespace)

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        try:
            spec = parse(VaultAuthSpec, body.get("spec"), reason="InvalidAuth")
            endpoint = self.identities.endpoint(spec.connection_ref, view)
            if spec.token is not None:
                ref = spec.token.secret_ref
                self.identities.credentials.secret_value(
                    body["metadata"]["namespace"], ref.name, ref.key
                )
        except SyncError as exc:
            return Result(Outcome.failed(exc))
        method = "kubernetes" if spec.kubernetes is not None else "token"
        return Result(Outcome(True, "Valid", f"{method} auth via {endpoint.address}"))
