"""Many VaultSecrets through Vault sealed/unsealed and killed/restarted: all survive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from e2e.harness.conditions import ready_condition
from e2e.harness.manifests import vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack

pytestmark = pytest.mark.e2e
COUNT = 20


def all_ready(stack: Stack, namespace: str, status: str, reason: str | None = None) -> bool:
    for i in range(COUNT):
        condition = stack.ready_is(namespace, f"s{i}", status)
        if condition is None or (reason is not None and condition["reason"] != reason):
            return False
    return True


def secrets_snapshot(stack: Stack, namespace: str) -> dict[str, tuple[str, dict[str, str]]]:
    items = stack.core.list_namespaced_secret(
        namespace, label_selector="app.kubernetes.io/managed-by=vaultsync"
    ).items
    return {s.metadata.name: (s.metadata.resource_version, s.data) for s in items}


@pytest.mark.parametrize(
    ("outage", "reason"),
    [("seal", "VaultSealed"), ("kill", "VaultUnavailable")],
)
def test_outage_changes_nothing_and_everything_recovers(
    stack: Stack, tenant: str, outage: str, reason: str
) -> None:
    for i in range(COUNT):
        stack.put(f"{tenant}/s{i}", {"pw": f"outage-{outage}-{i}-value"})
    stack.apply(*(vault_secret(tenant, f"s{i}", f"{tenant}/s{i}") for i in range(COUNT)))
    eventually(lambda: all_ready(stack, tenant, "True"), 120, "all Ready")
    before = secrets_snapshot(stack, tenant)
    assert len(before) == COUNT
    operator_pid = stack.operator.pid
    recover: Callable[[], None]
    if outage == "seal":
        stack.bao.seal()
        recover = stack.bao.unseal
    else:
        stack.bao.kill()
        recover = stack.bao.start
    try:
        eventually(lambda: all_ready(stack, tenant, "False", reason), 60, f"all {reason}")
        assert secrets_snapshot(stack, tenant) == before
    finally:
        recover()
    eventually(lambda: all_ready(stack, tenant, "True"), 120, "all Ready again")
    assert secrets_snapshot(stack, tenant) == before
    assert stack.operator.pid == operator_pid


def connection_ready(stack: Stack, status: str, reason: str) -> dict[str, Any] | None:
    obj = stack.get("vaultconnections", "default")
    ready = ready_condition(obj)
    if ready and ready["status"] == status and ready["reason"] == reason:
        return dict(obj["status"])
    return None


def test_connection_health_follows_the_server(stack: Stack, tenant: str) -> None:
    status = eventually(lambda: connection_ready(stack, "True", "Reachable"), 60, "Reachable")
    assert status["serverVersion"].startswith("2.")
    assert status["sealed"] is False
    stack.bao.seal()
    try:
        status = eventually(lambda: connection_ready(stack, "False", "VaultSealed"), 30, "sealed")
        assert status["sealed"] is True
    finally:
        stack.bao.unseal()
    eventually(lambda: connection_ready(stack, "True", "Reachable"), 30, "Reachable again")
    stack.bao.stop()
    try:
        eventually(lambda: connection_ready(stack, "False", "VaultUnavailable"), 30, "down")
    finally:
        stack.bao.start()
    eventually(lambda: connection_ready(stack, "True", "Reachable"), 30, "Reachable again")
