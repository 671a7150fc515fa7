"""Whether vaultsync created the one Vault object a cluster-scoped object declares (an audit
device, a transit key): `status.managed`, written *before* the create call so that a crash in
between cannot make vaultsync forget it. Within one operator process the value last recorded
is remembered by uid, because the object's body may lag behind our own status patches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vaultsync.kube import status
from vaultsync.kube.api import Kube

Claim = Callable[[bool], None]


class Claims:
    """status.managed of one kind's objects; one instance per reconciler."""

    def __init__(self, kube: Kube, plural: str) -> None:
        self.kube = kube
        self.plural = plural
        self._known: dict[str, bool] = {}

    def managed(self, body: Mapping[str, Any]) -> bool:
        uid = body["metadata"]["uid"]
        if uid in self._known:
            return self._known[uid]
        return bool((body.get("status") or {}).get("managed"))

    def claim(self, body: Mapping[str, Any]) -> Claim:
        """What records managed now, in status and here (before a create call)."""

        def record(managed: bool) -> None:
            status.patch(
                self.kube, self.plural, None, body["metadata"]["name"], {"managed": managed}
            )
            self.remember(body, managed)

        return record

    def remember(self, body: Mapping[str, Any], managed: bool) -> None:
        """managed as a reconcile's status records it."""
        self._known[body["metadata"]["uid"]] = managed

    def forget(self, body: Mapping[str, Any]) -> None:
        self._known.pop(body["metadata"]["uid"], None)
