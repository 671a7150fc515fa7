"""Fakes for whole reconciles in unit tests: the Secrets API, restarts that only record, and
a reconciler of a kind that writes a Secret wired to them."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.settings import Settings
from vaultsync.secrets.restarts import NO_TARGETS
from vaultsync.secrets.writer import TenantSecretReconciler

R = TypeVar("R", bound=TenantSecretReconciler)


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


def faked(
    monkeypatch: pytest.MonkeyPatch, module: str, kind: type[R], key: bytes
) -> tuple[Cluster, R, Restarted]:
    """A reconciler of vaultsync.secrets.<module> whose Secrets, HMAC key, Vault sessions
    (an operation runs with client None), tenant identity and restarts are fakes."""
    cluster = Cluster()
    for name in (module, "writer"):
        target = f"vaultsync.secrets.{name}.secrets"
        monkeypatch.setattr(f"{target}.read", cluster.read)
        monkeypatch.setattr(f"{target}.create", cluster.create)
        monkeypatch.setattr(f"{target}.replace", cluster.replace)
    monkeypatch.setattr(f"vaultsync.secrets.{module}.hmackey.shared", lambda *_: key)
    monkeypatch.setattr(
        f"vaultsync.secrets.{module}.with_client", lambda _sessions, _identity, op: op(None)
    )
    kube = SimpleNamespace(secrets=SimpleNamespace(get=lambda ns, n: None))
    settings = Settings(namespace="ops", metrics_port=0, workers=1, min_backoff=1, max_backoff=5)
    reconciler = kind(kube, None, settings)  # type: ignore[arg-type]
    reconciler.identities = SimpleNamespace(tenant=lambda *_: "identity")  # type: ignore[assignment]
    restarts = Restarted()
    reconciler.restarts = restarts  # type: ignore[assignment]
    return cluster, reconciler, restarts
