"""Fakes for whole reconciles in unit tests: the Secrets API, and restarts that only record."""

from __future__ import annotations

import copy
from typing import Any

from vaultsync.runtime.errors import SyncError
from vaultsync.secrets.restarts import NO_TARGETS


class Cluster:
    """The Secrets API as a fake, plus the watch's copy of them (kube.secrets)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0
        self.reads = 0

    def read(self, _kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found)

    def create(self, _kube: Any, namespace: str, body: dict[str, Any]) -> None:
        if (namespace, body["metadata"]["name"]) in self.secrets:
            raise SyncError("create Secret: exists", reason="AlreadyExists")
        self.replace(_kube, namespace, body)

    def replace(self, _kube: Any, namespace: str, body: dict[str, Any]) -> None:
        self.writes += 1
        self.secrets[(namespace, body["metadata"]["name"])] = copy.deepcopy(body)


class Restarted:
    def __init__(self) -> None:
        self.runs: list[tuple[Any, dict[str, bytes]]] = []

    def after_sync(
        self, body: Any, spec: Any, key: bytes, previous: Any, data: dict[str, bytes]
    ) -> Any:
        self.runs.append((previous, data))
        return NO_TARGETS

    def forget(self, namespace: str, name: str) -> None:
        pass
